-- The server settings a role was granted SET or ALTER SYSTEM on (PostgreSQL 15 and
-- later, pg_parameter_acl): SET on session_replication_role skips foreign keys and
-- triggers, ALTER SYSTEM rewrites the server's configuration.
SELECT DISTINCT p.parname::text
FROM pg_catalog.pg_parameter_acl p, aclexplode(p.paracl) a
WHERE a.grantee = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(role)s)
ORDER BY 1
