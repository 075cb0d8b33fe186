-- A crud's times are finite. psql or an import could store `infinity` (or `-infinity`) in
-- created_at or expires_at, which the API cannot read back (a datetime has no infinity:
-- the home feed failed) nor show as an OpenAPI date-time. The check is added NOT VALID:
-- it holds for every write from here on without reading the table. The rows already
-- there are looked up through the indexes on both columns, under the lock the check
-- took, and a database that has any is not changed: the migration fails, naming them.
-- The next migration validates the check in a transaction of its own, whose lock lets
-- reads and writes go on while it reads the table.
-- migrate:up
ALTER TABLE public.activities
  ADD CONSTRAINT activities_times_finite CHECK (isfinite(created_at) AND isfinite(expires_at))
  NOT VALID;
DO $$
DECLARE
  total bigint;
  named text;
BEGIN
  SELECT count(*) INTO total
  FROM public.activities
  WHERE created_at IN ('infinity', '-infinity') OR expires_at IN ('infinity', '-infinity');
  IF total = 0 THEN
    RETURN;
  END IF;
  SELECT string_agg(format('%s (created_at %s, expires_at %s)', uuid, created_at, expires_at),
                    '; ' ORDER BY uuid) INTO named
  FROM (
    SELECT uuid, created_at, expires_at
    FROM public.activities
    WHERE created_at IN ('infinity', '-infinity') OR expires_at IN ('infinity', '-infinity')
    ORDER BY uuid
    LIMIT 20
  ) AS found;
  RAISE EXCEPTION 'cruds with an infinite created_at or expires_at (%): % (give each finite '
    'times, UPDATE public.activities SET created_at = ..., expires_at = ... WHERE uuid = ..., '
    'or delete it, then migrate again)', total, named
    || CASE WHEN total > 20 THEN format('; and %s more', total - 20) ELSE '' END;
END
$$;

-- migrate:down
ALTER TABLE public.activities DROP CONSTRAINT IF EXISTS activities_times_finite;
