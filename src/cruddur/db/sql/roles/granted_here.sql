-- Whether the roles step ran in this database before: its default privileges name the
-- API's role. (Migrating another database on the same server must not open it to them.)
SELECT EXISTS (
  SELECT 1
  FROM pg_default_acl d, aclexplode(d.defaclacl) a
  JOIN pg_roles r ON r.oid = a.grantee
  WHERE r.rolname = %(role)s
)
