-- The bookkeeping: one row per applied migration, written in the same transaction as
-- the migration itself. `adopted`: recorded without running (the schema was there).
-- Made with no one's privileges but the owner's, whatever default privileges the schema
-- has: earlier versions of `db roles` set some for the API's tables, which let the API
-- mark a migration applied until grant.sql ran again.
DO $$
DECLARE
  grantee text;
BEGIN
  IF to_regclass('public.schema_migrations') IS NOT NULL THEN
    RETURN;
  END IF;
  CREATE TABLE public.schema_migrations (
    version    text        PRIMARY KEY CHECK (version ~ '^[0-9]{14}$'),
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    adopted    boolean     NOT NULL DEFAULT false
  );
  FOR grantee IN
    SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END
    FROM pg_class c
    CROSS JOIN aclexplode(c.relacl) a
    LEFT JOIN pg_roles r ON r.oid = a.grantee
    WHERE c.oid = 'public.schema_migrations'::regclass AND a.grantee <> c.relowner
  LOOP
    EXECUTE format('REVOKE ALL ON public.schema_migrations FROM %s', grantee);
  END LOOP;
END
$$
