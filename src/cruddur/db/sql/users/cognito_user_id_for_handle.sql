-- The Cognito `sub` on file for a handle (for minting development tokens).
SELECT cognito_user_id FROM public.users WHERE handle = %(handle)s;
