-- Every session on the server, as the original bin/db-sessions listed them.
-- `hidden`: another role's session, whose backend_type, state and address this role may
-- not read (it is neither a superuser nor a member of pg_read_all_stats or of that role);
-- its pid, database, user and application are still shown. Such a row is a session when
-- it has a database and a user: autovacuum workers have no user, the launchers no database
-- (other_sessions.sql says the same). Filtering on backend_type alone left them out.
SELECT pid AS process_id,
       usename AS "user",
       datname AS db,
       host(client_addr) AS client_addr,
       application_name AS app,
       state,
       backend_type IS NULL AS hidden
FROM pg_stat_activity
WHERE backend_type = 'client backend'
   OR (backend_type IS NULL AND datname IS NOT NULL AND usesysid IS NOT NULL)
ORDER BY datname NULLS LAST, pid
