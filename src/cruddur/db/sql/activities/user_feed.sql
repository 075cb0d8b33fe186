-- One user's feed: the same page as home.sql, for the user with handle %(handle)s, in any
-- case (users_handle_any_case_key finds it).
-- user_found is false for an unknown handle (an empty feed is still a known user).
-- activities_user_feed_idx (user_uuid, created_at DESC, uuid DESC) serves the page.
WITH author AS (
  SELECT uuid, display_name, handle FROM public.users WHERE lower(handle) = lower(%(handle)s)
),
page AS (
  SELECT
    {{activities/columns}}
  FROM public.activities AS activity
  CROSS JOIN author
  -- A scalar subquery, not a join condition: the planner then reads the user's
  -- index in order and stops after the page, instead of sorting all their cruds.
  WHERE activity.user_uuid = (SELECT uuid FROM author)
    AND activity.expires_at > current_timestamp
    AND (activity.created_at, activity.uuid)
        < (%(before_created_at)s::timestamptz, %(before_uuid)s::uuid)
  ORDER BY activity.created_at DESC, activity.uuid DESC
  LIMIT %(limit)s::int + 1
),
{{activities/newest_first}}
  EXISTS (SELECT FROM author) AS user_found
FROM (SELECT) AS one_row
LEFT JOIN last_shown ON true;
