-- The columns of the schema_migrations table that is there: Cruddur's has version, name,
-- checksum, applied_at and adopted; dbmate's, Rails' or golang-migrate's table of that
-- name has version alone (with golang-migrate's dirty). From the catalog, which shows
-- them to any user (information_schema only to one with privileges on the table).
SELECT coalesce(array_agg(attname::text ORDER BY attname), '{}')
FROM pg_attribute
WHERE attrelid = to_regclass('public.schema_migrations') AND attnum > 0 AND NOT attisdropped
