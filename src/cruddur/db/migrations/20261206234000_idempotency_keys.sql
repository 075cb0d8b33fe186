-- Idempotency-Key on the write endpoints (openapi.yaml): a signed-in user's write sent
-- with a key is stored at most once per (user, key). The key's row goes in with the
-- crud or reply, in the same statement (activities/create_keyed.sql, reply_keyed.sql),
-- so both exist or neither; the primary key decides between two attempts at once. The
-- row keeps the first answer's body, for a retry to be answered the same. A row is kept
-- 24 hours; keyed writes delete expired ones as they go (activities/kept_answer.sql).
-- migrate:up
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

-- migrate:down
DROP TABLE IF EXISTS public.idempotency_keys;
