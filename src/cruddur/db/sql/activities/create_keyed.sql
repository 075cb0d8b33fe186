-- create.sql with an Idempotency-Key: the new crud, and the key's row holding its JSON,
-- in one statement, so both are stored or neither. A key the caller has used already
-- (committed, or by a statement still running, which this one waits for) fails it on
-- idempotency_keys_pkey with nothing stored: services/activities.py then answers from
-- the row that is there.
WITH created AS (
  INSERT INTO public.activities (user_uuid, message, expires_at)
  VALUES (%(user_uuid)s::uuid, %(message)s, current_timestamp + %(ttl)s::interval)
  RETURNING *
),
{{activities/kept_answer}}
