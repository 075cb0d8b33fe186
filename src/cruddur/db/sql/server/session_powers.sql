-- Whether the session's role may create databases and roles (a superuser may do both),
-- and which of the given roles do not exist yet.
SELECT
  current_user::text AS role,
  r.rolsuper OR r.rolcreatedb AS createdb,
  r.rolsuper OR r.rolcreaterole AS createrole,
  ARRAY(
    SELECT name
    FROM unnest(%(roles)s::text[]) AS name
    WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name)
    ORDER BY 1
  ) AS missing_roles
FROM pg_roles r
WHERE r.rolname = current_user
