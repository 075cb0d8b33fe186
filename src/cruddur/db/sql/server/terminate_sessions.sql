-- Disconnect every other session from a database; returns one row per session ended.
-- The CTE is MATERIALIZED so the filter runs before pg_terminate_backend: pushed down
-- into pg_stat_activity's scan, the call would otherwise reach sessions of other databases.
-- Clients' sessions only: an autovacuum worker visiting the database is no one's session
-- (it was counted as one, "disconnected 2 sessions" for a user's one).
WITH victims AS MATERIALIZED (
  SELECT pid
  FROM pg_stat_activity
  WHERE datname = %(dbname)s AND pid <> pg_backend_pid() AND backend_type = 'client backend'
)
SELECT pid FROM victims WHERE pg_terminate_backend(pid)
