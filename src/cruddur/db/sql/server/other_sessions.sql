-- The sessions other than ours connected to a database: each one's pid, whether this role
-- may end it (pg_terminate_backend), and whether its role is a superuser.
-- A role that is neither a superuser nor a member of pg_read_all_stats or of the
-- session's role sees another role's session without its backend_type (NULL, as its
-- state, address and query), but with its pid, database and user: such a row is a
-- session when it has a database and a user (autovacuum workers have no user; the
-- launchers, no database). Filtering on backend_type alone dropped them: `db drop` saw
-- 0 sessions and failed on "being accessed by other users".
-- Who may end a session is pg_signal_backend()'s rule: a member of its role or of
-- pg_signal_backend, and a superuser's session only a superuser.
SELECT a.pid,
       (pg_has_role(a.usesysid, 'USAGE') OR pg_has_role('pg_signal_backend', 'USAGE'))
         AND (NOT coalesce(r.rolsuper, false)
              OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)) AS may_end,
       coalesce(r.rolsuper, false) AS superuser_s
FROM pg_stat_activity a
LEFT JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.datname = %(dbname)s
  AND a.pid <> pg_backend_pid()
  AND (a.backend_type = 'client backend'
       OR (a.backend_type IS NULL AND a.usesysid IS NOT NULL))
ORDER BY a.pid
