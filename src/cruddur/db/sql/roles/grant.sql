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

-- Tables made later by the owner (migrations) get nothing until this file names them:
-- the default privileges earlier versions gave the API's role are taken back.
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {api};
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {api};
-- Each role gets what its SQL uses, column by column where it writes (or, for the API,
-- reads users); never DELETE, TRUNCATE or DDL. The API: feeds and cruds read; a crud or
-- a reply added (not its counts, id or time: those are the defaults'); a parent's
-- replies_count raised; users read for their names and who a token's sub is, never
-- their emails, never written (the sign-up Lambda and the owner's verbs write them).
-- The Lambda: a user added, read back. The migrations' bookkeeping: the owner's alone.
-- In a block, for tables a database on its way through its first migrations may not
-- have yet. The names reach it as settings of this transaction: a name written into
-- the block's dollar-quoted text would end it early if it held `$$`.
SELECT set_config('cruddur.grant_api', {api_name}, true),
       set_config('cruddur.grant_lambda', {lambda_name}, true);
DO $$
DECLARE
  api text := current_setting('cruddur.grant_api');
  lambda text := current_setting('cruddur.grant_lambda');
BEGIN
  IF to_regclass('public.schema_migrations') IS NOT NULL THEN
    EXECUTE format('REVOKE ALL ON public.schema_migrations FROM %I', api);
  END IF;
  IF to_regclass('public.activities') IS NOT NULL THEN
    EXECUTE format('GRANT SELECT ON public.activities TO %I', api);
    EXECUTE format(
      'GRANT INSERT (user_uuid, message, reply_to_activity_uuid, expires_at), '
      'UPDATE (replies_count) ON public.activities TO %I', api);
  END IF;
  IF to_regclass('public.users') IS NOT NULL THEN
    EXECUTE format(
      'GRANT SELECT (uuid, display_name, handle, cognito_user_id, created_at) '
      'ON public.users TO %I', api);
    EXECUTE format('GRANT SELECT ON public.users TO %I', lambda);
    EXECUTE format(
      'GRANT INSERT (display_name, email, handle, cognito_user_id) ON public.users TO %I',
      lambda);
  END IF;
END
$$;
