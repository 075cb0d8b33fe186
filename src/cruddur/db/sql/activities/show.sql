-- One unexpired crud and its unexpired replies, oldest reply first (the original ordered
-- them by the parent's time), as {"activity": {…}, "replies": […]}. No row: not found.
-- Replies are capped at %(replies_limit)s so one busy crud cannot make a huge response.
WITH activity AS (
  SELECT
    activities.uuid,
    users.display_name,
    users.handle,
    activities.message,
    activities.replies_count,
    activities.reposts_count,
    activities.likes_count,
    activities.reply_to_activity_uuid,
    activities.expires_at,
    activities.created_at
  FROM public.activities
  JOIN public.users ON users.uuid = activities.user_uuid
  WHERE activities.uuid = %(uuid)s::uuid
    AND activities.expires_at > current_timestamp
),
replies AS (
  SELECT
    replies.uuid,
    users.display_name,
    users.handle,
    replies.message,
    replies.replies_count,
    replies.reposts_count,
    replies.likes_count,
    replies.reply_to_activity_uuid,
    replies.expires_at,
    replies.created_at
  FROM public.activities AS replies
  JOIN public.users ON users.uuid = replies.user_uuid
  WHERE replies.reply_to_activity_uuid = %(uuid)s::uuid
    AND replies.expires_at > current_timestamp
  ORDER BY replies.created_at, replies.uuid
  LIMIT %(replies_limit)s::int
)
SELECT json_build_object(
  'activity', row_to_json(activity),
  'replies', COALESCE(
    (SELECT json_agg(replies ORDER BY replies.created_at, replies.uuid) FROM replies),
    '[]'::json
  )
)::text
FROM activity;
