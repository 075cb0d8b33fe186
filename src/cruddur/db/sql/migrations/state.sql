-- What the database holds before migrations run: the bookkeeping table or not, and how
-- many tables outside the system schemas (an empty database has none). An extension's
-- own views and tables (pg_buffercache, pg_stat_statements, common on RDS) are not the
-- schema's: counted, they made an empty database one to adopt, refused as unknown.
SELECT to_regclass('public.schema_migrations') IS NOT NULL AS bookkeeping,
       (SELECT count(*)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_%'
          AND NOT EXISTS (
            SELECT 1 FROM pg_depend d
            WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
          )) AS tables
