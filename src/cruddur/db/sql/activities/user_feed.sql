-- One user's feed: the same page as home.sql, for the user with handle %(handle)s.
-- user_found is false for an unknown handle (an empty feed is still a known user).
-- activities_user_feed_idx (user_uuid, created_at DESC, uuid DESC) serves the page.
WITH author AS (
  SELECT uuid, display_name, handle FROM public.users WHERE handle = %(handle)s
),
page AS (
  SELECT
    activities.uuid,
    author.display_name,
    author.handle,
    activities.message,
    activities.replies_count,
    activities.reposts_count,
    activities.likes_count,
    activities.reply_to_activity_uuid,
    activities.expires_at,
    activities.created_at
  FROM public.activities
  CROSS JOIN author
  -- A scalar subquery, not a join condition: the planner then reads the user's
  -- index in order and stops after the page, instead of sorting all their cruds.
  WHERE activities.user_uuid = (SELECT uuid FROM author)
    AND activities.expires_at > current_timestamp
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
  EXISTS (SELECT FROM author) AS user_found
FROM (SELECT) AS one_row
LEFT JOIN last_shown ON true;
