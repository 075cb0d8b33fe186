-- A reply by the signed-in user to the unexpired crud %(parent_uuid)s. One statement, so
-- one transaction: the parent's replies_count goes up exactly when the reply is stored
-- (the original never counted replies). The reply expires with its parent.
-- No row: the parent does not exist or has expired.
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
)
{{activities/created_json}}
