-- reply.sql with an Idempotency-Key: the reply, its parent's count and the key's row
-- holding the reply's JSON, in one statement, so all are stored or none
-- (create_keyed.sql says what a key used already does). No row: the parent does not
-- exist or has expired, and nothing is kept for the key (a retry tries again).
WITH parent AS (
  UPDATE public.activities
  SET replies_count = replies_count + 1
  WHERE uuid = %(parent_uuid)s::uuid
    AND expires_at > current_timestamp
  RETURNING uuid, expires_at
),
created AS (
  INSERT INTO public.activities (user_uuid, message, reply_to_activity_uuid, expires_at)
  SELECT %(user_uuid)s::uuid, %(message)s, parent.uuid, parent.expires_at
  FROM parent
  RETURNING *
),
{{activities/kept_answer}}
