-- What the application roles may do in this database. Run by the owner (the migrations'
-- role) after every schema load or migration; running it again changes nothing.
-- {database}, {api} and {lambda} are identifiers filled in by cruddur.ops.roles, and
-- {api_name} and {lambda_name} the same roles as strings.

-- No one but the owner makes objects here: not in public, not even temporary tables.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC;
GRANT CONNECT ON DATABASE {database} TO {api}, {lambda};
GRANT USAGE ON SCHEMA public TO {api}, {lambda};

-- Start from nothing, so that a privilege taken out here is taken back on the server.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {api}, {lambda};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {api}, {lambda};

-- The API reads and writes rows (feeds, cruds, replies); never DELETE, TRUNCATE or DDL.
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {api};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {api};
-- Tables the owner makes later (migrations) get the same, without waiting for this file.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE ON TABLES TO {api};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {api};
-- Two rules for tables a database on its way through its first migrations may not have
-- yet: the migrations' bookkeeping is the owner's alone (the API must not mark a
-- migration applied or forget one), and the sign-up Lambda adds a user and reads users
-- back, nothing else.
-- The names reach the block as settings of this transaction: a name written into the
-- block's dollar-quoted text would end it early if it held `$$`.
SELECT set_config('cruddur.grant_api', {api_name}, true),
       set_config('cruddur.grant_lambda', {lambda_name}, true);
DO $$
BEGIN
  IF to_regclass('public.schema_migrations') IS NOT NULL THEN
    EXECUTE format('REVOKE ALL ON public.schema_migrations FROM %I',
                   current_setting('cruddur.grant_api'));
  END IF;
  IF to_regclass('public.users') IS NOT NULL THEN
    EXECUTE format('GRANT SELECT, INSERT ON public.users TO %I',
                   current_setting('cruddur.grant_lambda'));
  END IF;
END
$$;
