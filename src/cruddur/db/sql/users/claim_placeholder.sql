-- Give a row that still carries a placeholder id (the seed's MOCK-<handle>, or the
-- original's bare MOCK) the real Cognito sub of the user with that handle.
-- Returns the row's uuid, or no row when the handle has no placeholder row.
UPDATE public.users
SET cognito_user_id = %(cognito_user_id)s, email = %(email)s
WHERE handle = %(handle)s
  AND (cognito_user_id = 'MOCK' OR starts_with(cognito_user_id, 'MOCK-'))
RETURNING uuid
