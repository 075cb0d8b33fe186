-- A crud's times are ones the API can read back and show: from 0001-01-02 to before
-- 9999-12-31, UTC. PostgreSQL takes years BC and after 9999, which a Python datetime has
-- not (psycopg refused the feed's page: a 500, and its paging stopped for good) and
-- OpenAPI's date-time cannot write ("10000-01-01T00:00:00+00:00"). A day inside years
-- 1 and 9999 at each end: a time is stored in UTC and written out in the session's
-- time zone, and a session not in UTC (behind a transaction pooler the database's own,
-- README "Scaling out"; psql) moved 0001-01-01 00:00 UTC back into year 1 BC, and
-- 9999-12-31 23:00 UTC on into 10000; no zone is a day away from UTC. The check is added
-- NOT VALID, like 20261206233000_activities_times_finite.sql's: the rows already there
-- are looked up through the indexes on both columns, under the lock the check took,
-- and a database that has any is not changed: the migration fails, naming them. The
-- next migration validates the check.
-- migrate:up
ALTER TABLE public.activities
  ADD CONSTRAINT activities_times_in_range CHECK (
    created_at >= '0001-01-02 00:00:00+00' AND created_at < '9999-12-31 00:00:00+00'
    AND expires_at >= '0001-01-02 00:00:00+00' AND expires_at < '9999-12-31 00:00:00+00'
  ) NOT VALID;
DO $$
DECLARE
  total bigint;
  named text;
BEGIN
  SELECT count(*) INTO total
  FROM public.activities
  WHERE created_at < '0001-01-02 00:00:00+00' OR created_at >= '9999-12-31 00:00:00+00'
     OR expires_at < '0001-01-02 00:00:00+00' OR expires_at >= '9999-12-31 00:00:00+00';
  IF total = 0 THEN
    RETURN;
  END IF;
  -- Named in UTC whatever the session's zone: the times the message asks to change.
  SELECT string_agg(format('%s (created_at %s, expires_at %s)', uuid,
                           timezone('UTC', created_at) || ' UTC',
                           timezone('UTC', expires_at) || ' UTC'),
                    '; ' ORDER BY uuid) INTO named
  FROM (
    SELECT uuid, created_at, expires_at
    FROM public.activities
    WHERE created_at < '0001-01-02 00:00:00+00' OR created_at >= '9999-12-31 00:00:00+00'
       OR expires_at < '0001-01-02 00:00:00+00' OR expires_at >= '9999-12-31 00:00:00+00'
    ORDER BY uuid
    LIMIT 20
  ) AS found;
  RAISE EXCEPTION 'cruds with a created_at or expires_at outside 0001-01-02 to 9999-12-30 '
    'UTC, which the API cannot read back (%): % (give each times within them, UPDATE '
    'public.activities SET created_at = ..., expires_at = ... WHERE uuid = ..., or delete '
    'it, then migrate again)', total, named
    || CASE WHEN total > 20 THEN format('; and %s more', total - 20) ELSE '' END;
END
$$;

-- migrate:down
ALTER TABLE public.activities DROP CONSTRAINT IF EXISTS activities_times_in_range;
