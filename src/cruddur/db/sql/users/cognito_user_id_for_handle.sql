-- The Cognito `sub` on file for a handle, and the handle as stored (for minting
-- development tokens). Any case finds it: handles are unique whatever their case
-- (users_handle_any_case_key, which this lookup uses), as /@AndrewBrown shows andrewbrown.
SELECT cognito_user_id, handle FROM public.users WHERE lower(handle) = lower(%(handle)s);
