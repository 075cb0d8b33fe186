-- How many of the schema's tables exist: 0 (none), 1 (a partial schema) or 2.
SELECT (to_regclass('public.users') IS NOT NULL)::int
     + (to_regclass('public.activities') IS NOT NULL)::int
