-- Whether this session's user could change the schema: a superuser, a user who may
-- create in public, or the owner (or a member of the owner) of one of its tables.
SELECT r.rolsuper
    OR has_schema_privilege('public', 'CREATE')
    OR EXISTS (
      SELECT 1 FROM pg_tables t
      WHERE t.schemaname = 'public' AND pg_has_role(t.tableowner, 'USAGE')
    )
FROM pg_roles r
WHERE r.rolname = current_user
