-- The check 20261206233000_activities_times_finite.sql added, validated: PostgreSQL reads
-- the table once to prove every row keeps it. VALIDATE takes a lock that lets reads and
-- writes go on (SHARE UPDATE EXCLUSIVE); in the previous migration's transaction it would
-- have read the table under that one's ADD CONSTRAINT lock, which stops them all.
-- migrate:up
ALTER TABLE public.activities VALIDATE CONSTRAINT activities_times_finite;

-- migrate:down
-- Back to NOT VALID, as the previous migration leaves it; no row is read.
ALTER TABLE public.activities
  DROP CONSTRAINT activities_times_finite,
  ADD CONSTRAINT activities_times_finite CHECK (isfinite(created_at) AND isfinite(expires_at))
  NOT VALID;
