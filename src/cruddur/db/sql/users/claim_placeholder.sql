-- Give a row that still carries a placeholder id (the seed's MOCK-<handle>, or the
-- original's bare MOCK) the real Cognito sub of the user with that handle, only when that
-- user's verified email is the row's (the caller checks email_verified): a handle alone
-- would hand a seeded account to whoever signs up first with its name.
-- Returns the row's uuid, or no row when the handle has no such placeholder row.
UPDATE public.users
SET cognito_user_id = %(cognito_user_id)s
WHERE handle = %(handle)s
  AND (cognito_user_id = 'MOCK' OR starts_with(cognito_user_id, 'MOCK-'))
  AND lower(email) = lower(%(email)s)
RETURNING uuid
