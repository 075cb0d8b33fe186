-- A user confirmed in Cognito. Idempotent on the Cognito `sub`: Cognito retries a trigger
-- that timed out, and a retry must not add a second row (nor fail). Returns the new
-- row's uuid, or no row when this sub was already recorded. A handle taken by another
-- user, in any case, still raises unique_violation (users_handle_key, or
-- users_handle_any_case_key for one that differs only in case).
INSERT INTO public.users (display_name, email, handle, cognito_user_id)
VALUES (%(display_name)s, %(email)s, %(handle)s, %(cognito_user_id)s)
ON CONFLICT (cognito_user_id) DO NOTHING
RETURNING uuid
