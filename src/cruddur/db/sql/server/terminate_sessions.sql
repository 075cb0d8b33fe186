-- Disconnect every other session from a database that this role may end; returns one
-- row per session (other_sessions.sql's, which says which sessions and who may end them)
-- and whether it was ended.
-- The CTE is MATERIALIZED so the filter runs before pg_terminate_backend: pushed down
-- into pg_stat_activity's scan, the call would otherwise reach sessions of other databases.
-- Clients' sessions only: an autovacuum worker visiting the database is no one's session
-- (it was counted as one, "disconnected 2 sessions" for a user's one).
-- CASE, not AND: only CASE promises the call is never made for a session this role may
-- not end (PostgreSQL raises an error there, and nothing would be ended).
WITH others AS MATERIALIZED (
  {{server/other_sessions}}
)
SELECT pid, may_end, superuser_s,
       CASE WHEN may_end THEN pg_terminate_backend(pid) ELSE false END AS ended
FROM others
