-- One handle per person, whatever its case: `AndrewBrown` could sign up beside
-- `andrewbrown` and pass for them, and `/@AndrewBrown` found nobody. Handles keep the case
-- they were given; two that differ only in case cannot both exist. A database that already
-- has such a pair is not changed: the migration fails, naming them.
-- migrate:up
DO $$
DECLARE
  clashes text;
BEGIN
  SELECT string_agg(pair, '; ') INTO clashes
  FROM (
    SELECT string_agg(handle, ' and ' ORDER BY handle) AS pair
    FROM public.users
    GROUP BY lower(handle)
    HAVING count(*) > 1
    ORDER BY lower(handle)
    LIMIT 20
  ) AS found;
  IF clashes IS NOT NULL THEN
    RAISE EXCEPTION 'handles that differ only in case: % (give all but one of each another '
      'handle, UPDATE public.users SET handle = ..., then migrate again)', clashes;
  END IF;
END
$$;
CREATE UNIQUE INDEX users_handle_any_case_key ON public.users (lower(handle));

-- migrate:down
DROP INDEX IF EXISTS public.users_handle_any_case_key;
