-- Cruddur schema: users and their cruds (activities), and the Idempotency-Keys of writes.
-- Loading it replaces the tables, so it can be loaded again at any time.
-- Table and column names are the original Cruddur's, so its SQL runs unchanged.

-- uuid_generate_v4() comes from the uuid-ossp contrib extension. A server without it
-- (the pgserver wheel, for one) gets a stand-in over gen_random_uuid(): the same
-- random version-4 UUIDs. `cruddur db status` says which one is in use.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'uuid-ossp') THEN
    CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
  ELSIF to_regprocedure('public.uuid_generate_v4()') IS NULL THEN
    CREATE FUNCTION public.uuid_generate_v4() RETURNS uuid
      LANGUAGE sql VOLATILE PARALLEL SAFE
      AS 'SELECT gen_random_uuid()';
    COMMENT ON FUNCTION public.uuid_generate_v4() IS 'cruddur: stand-in for uuid-ossp';
  END IF;
END
$$;

DROP TABLE IF EXISTS public.idempotency_keys;
DROP TABLE IF EXISTS public.activities;
DROP TABLE IF EXISTS public.users;

CREATE TABLE public.users (
  uuid            uuid        PRIMARY KEY DEFAULT uuid_generate_v4(),
  display_name    text        NOT NULL
                  CHECK (char_length(display_name) BETWEEN 1 AND 256),
  handle          text        NOT NULL UNIQUE
                  -- ASCII spelled out: [[:alnum:]] follows the locale (é, 日 pass in C.UTF-8).
                  CHECK (handle ~ '^[A-Za-z0-9_.+-]{1,64}$'),
  email           text        NOT NULL
                  CHECK (char_length(email) BETWEEN 3 AND 320),
  -- Cognito's `sub`; seed rows carry a MOCK-… placeholder until synced.
  cognito_user_id text        NOT NULL UNIQUE
                  CHECK (char_length(cognito_user_id) BETWEEN 1 AND 128),
  created_at      timestamptz NOT NULL DEFAULT current_timestamp
);

CREATE TABLE public.activities (
  uuid                   uuid        PRIMARY KEY DEFAULT uuid_generate_v4(),
  user_uuid              uuid        NOT NULL REFERENCES public.users (uuid) ON DELETE CASCADE,
  message                text        NOT NULL
                         CHECK (char_length(message) <= 1024 AND message ~ '[^[:space:]]'),
  replies_count          integer     NOT NULL DEFAULT 0 CHECK (replies_count >= 0),
  reposts_count          integer     NOT NULL DEFAULT 0 CHECK (reposts_count >= 0),
  likes_count            integer     NOT NULL DEFAULT 0 CHECK (likes_count >= 0),
  reply_to_activity_uuid uuid        REFERENCES public.activities (uuid) ON DELETE CASCADE,
  -- Cruds expire; 30 days is the longest lifetime the app offers.
  expires_at             timestamptz NOT NULL DEFAULT current_timestamp + interval '30 days',
  created_at             timestamptz NOT NULL DEFAULT current_timestamp,
  CHECK (expires_at > created_at),
  -- No `infinity`: the API could not read such a time back, nor show it as a date-time.
  CONSTRAINT activities_times_finite CHECK (isfinite(created_at) AND isfinite(expires_at)),
  -- Nor a year BC or after 9999, which a Python datetime cannot hold, nor OpenAPI's
  -- date-time write; a day inside at each end, so a session in any time zone reads it
  -- (20261207015650_activities_times_in_range.sql says more).
  CONSTRAINT activities_times_in_range CHECK (
    created_at >= '0001-01-02 00:00:00+00' AND created_at < '9999-12-31 00:00:00+00'
    AND expires_at >= '0001-01-02 00:00:00+00' AND expires_at < '9999-12-31 00:00:00+00'
  )
);

-- One handle per person, whatever its case (`AndrewBrown` is `andrewbrown`'s); a user's
-- feed is found by it in any case.
CREATE UNIQUE INDEX users_handle_any_case_key ON public.users (lower(handle));

-- The feeds read newest first and page by (created_at, uuid): these indexes match
-- that ORDER BY, so a page costs the same whatever the table's size.
CREATE INDEX activities_feed_idx ON public.activities (created_at DESC, uuid DESC);
CREATE INDEX activities_user_feed_idx
  ON public.activities (user_uuid, created_at DESC, uuid DESC);
-- A crud's replies read oldest first, paged by (created_at, uuid) in the same way.
CREATE INDEX activities_replies_idx
  ON public.activities (reply_to_activity_uuid, created_at, uuid)
  WHERE reply_to_activity_uuid IS NOT NULL;
-- `cruddur db purge-expired` finds expired cruds through this, a batch at a time.
CREATE INDEX activities_expires_idx ON public.activities (expires_at);

-- A write sent with an Idempotency-Key is stored at most once per (user, key): the key's
-- row goes in with the crud or reply, in one statement, and keeps the first answer's
-- body for a retry (activities/create_keyed.sql). Kept 24 hours; keyed writes delete
-- expired rows as they go (activities/kept_answer.sql).
CREATE TABLE public.idempotency_keys (
  user_uuid   uuid        NOT NULL REFERENCES public.users (uuid) ON DELETE CASCADE,
  key         text        NOT NULL CHECK (key ~ '^[ -~]{1,255}$'),
  fingerprint bytea       NOT NULL,
  response    text        NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT current_timestamp,
  expires_at  timestamptz NOT NULL DEFAULT current_timestamp + interval '24 hours',
  PRIMARY KEY (user_uuid, key)
);
CREATE INDEX idempotency_keys_expires_idx ON public.idempotency_keys (expires_at);
