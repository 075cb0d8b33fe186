-- The rows a batch of Cognito users may already have: by sub, or by handle in any case
-- (`handles` lower-cased by the caller; handles are unique whatever their case). The email
-- decides whether a placeholder row may be claimed (users/claim_placeholder.sql).
SELECT handle, cognito_user_id, email
FROM public.users
WHERE cognito_user_id = ANY(%(cognito_user_ids)s) OR lower(handle) = ANY(%(handles)s)
