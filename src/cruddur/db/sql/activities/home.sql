-- The home feed: one page of unexpired cruds, newest first, as JSON built here.
-- Keyset paging: only rows before the cursor (%(before_created_at)s, %(before_uuid)s)
-- in (created_at DESC, uuid DESC) order, which activities_feed_idx reads directly, so a
-- page costs the same on page 1 and page 1000. One extra row tells whether more follow.
WITH page AS (
  SELECT
    {{activities/columns}}
  FROM public.activities AS activity
  JOIN public.users AS author ON author.uuid = activity.user_uuid
  WHERE activity.expires_at > current_timestamp
    AND (activity.created_at, activity.uuid)
        < (%(before_created_at)s::timestamptz, %(before_uuid)s::uuid)
  ORDER BY activity.created_at DESC, activity.uuid DESC
  LIMIT %(limit)s::int + 1
),
{{activities/newest_first}}
  -- When this page next changes by itself (a crud on it, or the next one, expires).
  (SELECT min(expires_at) FROM page) AS first_expiry
FROM (SELECT) AS one_row
LEFT JOIN last_shown ON true;
