-- What the database holds before migrations run: the bookkeeping table or not, and how
-- many tables outside the system schemas (an empty database has none).
SELECT to_regclass('public.schema_migrations') IS NOT NULL AS bookkeeping,
       (SELECT count(*)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_%') AS tables
