-- What a role may do beyond its grants: its attributes and the roles it belongs to
-- (membership could let it SET ROLE to them). No row: the role does not exist.
SELECT
  r.rolsuper AS superuser,
  r.rolcreatedb AS createdb,
  r.rolcreaterole AS createrole,
  r.rolreplication AS replication,
  r.rolbypassrls AS bypassrls,
  r.rolcanlogin AS login,
  ARRAY(
    SELECT g.rolname::text
    FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
    WHERE m.member = r.oid
    ORDER BY 1
  ) AS member_of
FROM pg_roles r
WHERE r.rolname = %(role)s
