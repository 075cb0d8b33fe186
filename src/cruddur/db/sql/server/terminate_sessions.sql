-- Disconnect every other session from a database; returns one row per session ended.
SELECT pid
FROM pg_stat_activity
WHERE datname = %(dbname)s
  AND pid <> pg_backend_pid()
  AND pg_terminate_backend(pid)
