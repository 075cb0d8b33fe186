-- A fragment, not a query: how a feed (home.sql, user_feed.sql) ends. From the query's
-- CTE `page` (up to %(limit)s + 1 cruds, newest first), the %(limit)s shown as a JSON
-- array, whether more follow (the extra row), and the keyset of the last one shown.
-- The query ends the SELECT list this begins, and gives its FROM.
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
