-- Indexes PostgreSQL will not use: what a CREATE INDEX CONCURRENTLY that failed or was
-- stopped leaves behind (a transaction:false migration is not all-or-nothing). One that
-- is being built right now (another migrate's CREATE INDEX CONCURRENTLY, waiting for old
-- transactions, is INVALID until it ends) is not left behind: it is left out.
SELECT i.indexrelid::regclass::text
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_%'
  AND NOT EXISTS (
    SELECT FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid
  )
ORDER BY 1
