-- Whether this session's user could change the schema: a superuser, a user who may
-- create in public, a member of the owner of one of its tables (with or without
-- INHERIT: a NOINHERIT member may still SET ROLE to it), or a role with CREATEROLE (it
-- can grant itself such a membership where the owner is no superuser, as on RDS). And
-- whether it could make tables of its own: create in any other schema, or make schemas.
SELECT r.rolsuper
    OR r.rolcreaterole
    OR has_schema_privilege('public', 'CREATE')
    OR EXISTS (
      SELECT 1 FROM pg_tables t
      WHERE t.schemaname = 'public' AND pg_has_role(t.tableowner, 'MEMBER')
    )
    OR EXISTS (
      SELECT 1 FROM pg_namespace n
      WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
        AND has_schema_privilege(n.oid, 'CREATE')
    )
    OR has_database_privilege(current_database(), 'CREATE')
FROM pg_roles r
WHERE r.rolname = current_user
