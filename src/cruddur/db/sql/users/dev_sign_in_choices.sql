-- The users a developer may sign in as from the page (dev key pair only): the seed's and
-- other hand-made users first, never the thousands `db seed --fake` adds.
SELECT handle, display_name
FROM public.users
WHERE NOT starts_with(cognito_user_id, 'FAKE-')
ORDER BY created_at, handle
LIMIT 20
