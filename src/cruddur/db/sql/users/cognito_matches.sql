-- The rows a batch of Cognito users may already have: by sub, or by handle.
SELECT handle, cognito_user_id
FROM public.users
WHERE cognito_user_id = ANY(%(cognito_user_ids)s) OR handle = ANY(%(handles)s)
