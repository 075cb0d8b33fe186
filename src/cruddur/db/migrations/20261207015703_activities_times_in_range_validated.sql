-- The check 20261207015650_activities_times_in_range.sql added, validated: PostgreSQL
-- reads the table once to prove every row keeps it. VALIDATE takes a lock that lets reads
-- and writes go on (SHARE UPDATE EXCLUSIVE); in the previous migration's transaction it
-- would have read the table under that one's ADD CONSTRAINT lock, which stops them all.
-- migrate:up
ALTER TABLE public.activities VALIDATE CONSTRAINT activities_times_in_range;

-- migrate:down
-- Back to NOT VALID, as the previous migration leaves it; no row is read.
ALTER TABLE public.activities
  DROP CONSTRAINT activities_times_in_range,
  ADD CONSTRAINT activities_times_in_range CHECK (
    created_at >= '0001-01-02 00:00:00+00' AND created_at < '9999-12-31 00:00:00+00'
    AND expires_at >= '0001-01-02 00:00:00+00' AND expires_at < '9999-12-31 00:00:00+00'
  ) NOT VALID;
