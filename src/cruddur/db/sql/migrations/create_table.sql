-- The bookkeeping: one row per applied migration, written in the same transaction as
-- the migration itself. `adopted`: recorded without running (the schema was there).
CREATE TABLE IF NOT EXISTS public.schema_migrations (
  version    text        PRIMARY KEY CHECK (version ~ '^[0-9]{14}$'),
  name       text        NOT NULL,
  checksum   text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  adopted    boolean     NOT NULL DEFAULT false
)
