-- A new crud by the signed-in user, expiring %(ttl)s from now; returns it as JSON,
-- in the same shape as the feeds.
WITH created AS (
  INSERT INTO public.activities (user_uuid, message, expires_at)
  VALUES (%(user_uuid)s::uuid, %(message)s, current_timestamp + %(ttl)s::interval)
  RETURNING *
)
SELECT row_to_json(activity)::text
FROM (
  SELECT
    created.uuid,
    users.display_name,
    users.handle,
    created.message,
    created.replies_count,
    created.reposts_count,
    created.likes_count,
    created.reply_to_activity_uuid,
    created.expires_at,
    created.created_at
  FROM created
  JOIN public.users ON users.uuid = created.user_uuid
) AS activity;
