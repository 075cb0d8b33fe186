-- The applied migrations, in the order they were applied.
SELECT version, name, checksum, applied_at, adopted
FROM public.schema_migrations
ORDER BY applied_at, version
