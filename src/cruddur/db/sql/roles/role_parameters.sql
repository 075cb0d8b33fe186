-- The server settings a role was granted SET or ALTER SYSTEM on, itself or through
-- PUBLIC (PostgreSQL 15 and later, pg_parameter_acl): SET on session_replication_role
-- skips foreign keys and triggers, ALTER SYSTEM rewrites the server's configuration.
SELECT p.parname::text, bool_or(a.grantee = 0) AS to_public
FROM pg_catalog.pg_parameter_acl p, aclexplode(p.paracl) a
WHERE a.grantee IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(role)s))
GROUP BY p.parname
ORDER BY 1
