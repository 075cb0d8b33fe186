-- What the application roles may do in this database. Run by the owner (the migrations'
-- role) after every schema load or migration; running it again changes nothing.
-- {database}, {api} and {lambda} are identifiers filled in by cruddur.ops.roles, and
-- {api_name} and {lambda_name} the same roles as strings.

-- One grant at a time in this database (until this transaction ends): a GRANT or REVOKE
-- that rewrites a catalog row another transaction is rewriting fails with "tuple
-- concurrently updated", and two deploys' migrates (each grants again) failed one in
-- twenty. Taken first, so every statement below reads the catalog as the last one left it.
SELECT pg_advisory_xact_lock(hashtext('cruddur grants'));

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
-- reads users); no DELETE but one (below), never TRUNCATE or DDL. The API: feeds and
-- cruds read; a crud or a reply added (not its counts, id or time: those are the
-- defaults'); a parent's replies_count raised; users read for their names and who a
-- token's sub is, never their emails, never written (the sign-up Lambda and the owner's
-- verbs write them); the Idempotency-Keys of its writes read, added (not their times:
-- the defaults') and, once expired, deleted (activities/kept_answer.sql): its one DELETE.
-- It picks expired keys FOR UPDATE SKIP LOCKED, which asks for UPDATE on some column:
-- expires_at, which the API never sets.
-- The Lambda: a user added, read back. The migrations' bookkeeping: the owner's alone.
-- In a block: for tables and columns a database may not have (yet, or any more). This
-- runs inside each migration's transaction too (cli/migrations.py), where the schema is
-- as that migration leaves it: only the tables and columns there now are granted (a
-- column this file names that a later migration adds failed every earlier one).
-- The names reach it as settings of this transaction: a name written into the block's
-- dollar-quoted text would end it early if it held `$$`.
SELECT set_config('cruddur.grant_api', {api_name}, true),
       set_config('cruddur.grant_lambda', {lambda_name}, true);
DO $$
DECLARE
  api text := current_setting('cruddur.grant_api');
  lambda text := current_setting('cruddur.grant_lambda');
  wanted record;
  present text;
BEGIN
  IF to_regclass('public.schema_migrations') IS NOT NULL THEN
    EXECUTE format('REVOKE ALL ON public.schema_migrations FROM %I', api);
  END IF;
  -- (table, privilege, role, columns); no columns: the whole table.
  FOR wanted IN
    SELECT * FROM (VALUES
      ('activities', 'SELECT', api, NULL::text[]),
      ('activities', 'INSERT', api,
       ARRAY['user_uuid', 'message', 'reply_to_activity_uuid', 'expires_at']),
      ('activities', 'UPDATE', api, ARRAY['replies_count']),
      ('idempotency_keys', 'SELECT', api, NULL),
      ('idempotency_keys', 'INSERT', api, ARRAY['user_uuid', 'key', 'fingerprint', 'response']),
      ('idempotency_keys', 'DELETE', api, NULL),
      ('idempotency_keys', 'UPDATE', api, ARRAY['expires_at']),
      ('users', 'SELECT', api,
       ARRAY['uuid', 'display_name', 'handle', 'cognito_user_id', 'created_at']),
      ('users', 'SELECT', lambda, NULL),
      ('users', 'INSERT', lambda, ARRAY['display_name', 'email', 'handle', 'cognito_user_id'])
    ) AS grants (tbl, privilege, grantee, cols)
  LOOP
    CONTINUE WHEN to_regclass(format('public.%I', wanted.tbl)) IS NULL;
    IF wanted.cols IS NULL THEN
      EXECUTE format('GRANT %s ON public.%I TO %I', wanted.privilege, wanted.tbl, wanted.grantee);
      CONTINUE;
    END IF;
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO present
    FROM pg_attribute AS a
    WHERE a.attrelid = format('public.%I', wanted.tbl)::regclass
      AND a.attname = ANY (wanted.cols)
      AND a.attnum > 0
      AND NOT a.attisdropped;
    IF present IS NOT NULL THEN
      EXECUTE format('GRANT %s (%s) ON public.%I TO %I',
                     wanted.privilege, present, wanted.tbl, wanted.grantee);
    END IF;
  END LOOP;
END
$$;
