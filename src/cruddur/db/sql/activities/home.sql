-- The home feed: one page of unexpired cruds, newest first, as JSON built here.
-- Keyset paging: only rows before the cursor (%(before_created_at)s, %(before_uuid)s)
-- in (created_at DESC, uuid DESC) order, which activities_feed_idx reads directly, so a
-- page costs the same on page 1 and page 1000. One extra row tells whether more follow.
WITH page AS (
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
  WHERE activities.expires_at > current_timestamp
    AND (activities.created_at, activities.uuid)
        < (%(before_created_at)s::timestamptz, %(before_uuid)s::uuid)
  ORDER BY activities.created_at DESC, activities.uuid DESC
  LIMIT %(limit)s::int + 1
),
shown AS (
  SELECT * FROM page ORDER BY created_at DESC, uuid DESC LIMIT %(limit)s::int
),
last_shown AS (
  SELECT created_at, uuid FROM shown ORDER BY created_at, uuid LIMIT 1
)
SELECT
  COALESCE(
    (SELECT json_agg(shown ORDER BY shown.created_at DESC, shown.uuid DESC) FROM shown),
    '[]'::json
  )::text AS body,
  (SELECT count(*) FROM page) > %(limit)s::int AS has_more,
  last_shown.created_at AS last_created_at,
  last_shown.uuid AS last_uuid,
  -- When this page next changes by itself (a crud on it, or the next one, expires).
  (SELECT min(expires_at) FROM page) AS first_expiry
FROM (SELECT) AS one_row
LEFT JOIN last_shown ON true;
