-- One unexpired crud and a page of its unexpired replies, oldest first (the original
-- ordered them by the parent's time), as {"activity": {…}, "replies": […]}, with the
-- keyset of the page's last reply when more follow. No row: not found.
-- Replies page by (created_at, uuid) after a cursor (%(after_created_at)s,
-- %(after_uuid)s), %(replies_limit)s at a time, so one busy crud cannot make a huge
-- response and no reply is out of reach. One extra row tells whether more follow.
WITH crud AS (
  SELECT
    {{activities/columns}}
  FROM public.activities AS activity
  JOIN public.users AS author ON author.uuid = activity.user_uuid
  WHERE activity.uuid = %(uuid)s::uuid
    AND activity.expires_at > current_timestamp
),
replies AS (
  SELECT
    {{activities/columns}}
  FROM public.activities AS activity
  JOIN public.users AS author ON author.uuid = activity.user_uuid
  WHERE activity.reply_to_activity_uuid = %(uuid)s::uuid
    AND activity.expires_at > current_timestamp
    AND (activity.created_at, activity.uuid)
        > (%(after_created_at)s::timestamptz, %(after_uuid)s::uuid)
  ORDER BY activity.created_at, activity.uuid
  LIMIT %(replies_limit)s::int + 1
),
shown AS (
  SELECT * FROM replies ORDER BY created_at, uuid LIMIT %(replies_limit)s::int
),
last_shown AS (
  SELECT created_at, uuid FROM shown ORDER BY created_at DESC, uuid DESC LIMIT 1
)
SELECT
  json_build_object(
    'activity', row_to_json(crud),
    'replies', COALESCE(
      (SELECT json_agg(shown ORDER BY shown.created_at, shown.uuid) FROM shown),
      '[]'::json
    )
  )::text AS body,
  (SELECT count(*) FROM replies) > %(replies_limit)s::int AS has_more,
  last_shown.created_at AS last_created_at,
  last_shown.uuid AS last_uuid
FROM crud
LEFT JOIN last_shown ON true;
