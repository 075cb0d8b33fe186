-- Give a row that still carries a placeholder id (the seed's MOCK-<handle>, or the
-- original's bare MOCK) the real Cognito sub of the user with that handle, only when that
-- user's verified email is the row's: a handle alone would hand a seeded account to
-- whoever signs up first with its name. The caller checks email_verified and compares
-- the emails (cognito_sync.same_email, the one comparison: a lower() here disagreed with
-- it); row_email is the row's email as the caller read it, so a row changed since is not
-- taken. Returns the row's uuid, or no row when the handle has no such placeholder row.
UPDATE public.users
SET cognito_user_id = %(cognito_user_id)s
WHERE handle = %(handle)s
  AND (cognito_user_id = 'MOCK' OR starts_with(cognito_user_id, 'MOCK-'))
  AND email = %(row_email)s
RETURNING uuid
