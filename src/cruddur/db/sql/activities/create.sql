-- A new crud by the signed-in user, expiring %(ttl)s from now; returns it as JSON,
-- in the same shape as the feeds.
WITH created AS (
  INSERT INTO public.activities (user_uuid, message, expires_at)
  VALUES (%(user_uuid)s::uuid, %(message)s, current_timestamp + %(ttl)s::interval)
  RETURNING *
)
{{activities/created_json}}
