-- The Cruddur user a verified token speaks for: the row whose cognito_user_id is the
-- token's `sub` (unique, so at most one).
SELECT uuid FROM public.users WHERE cognito_user_id = %(cognito_user_id)s;
