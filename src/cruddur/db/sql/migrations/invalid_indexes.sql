-- Indexes PostgreSQL will not use: what a CREATE INDEX CONCURRENTLY that failed or was
-- stopped leaves behind (a transaction:false migration is not all-or-nothing).
SELECT i.indexrelid::regclass::text
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1
