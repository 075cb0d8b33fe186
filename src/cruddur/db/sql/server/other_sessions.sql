-- How many sessions other than ours are connected to a database.
SELECT count(*)
FROM pg_stat_activity
WHERE datname = %(dbname)s
  AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
