-- A fragment, not a query: the row a write's CTE `created` inserted, as JSON text in
-- the feeds' shape (created_json.sql, kept_answer.sql). A data-modifying CTE's row is
-- seen only through its RETURNING, hence `created` rather than a read of the table.
SELECT row_to_json(activity_json)::text
FROM (
  SELECT
    {{activities/columns}}
  FROM created AS activity
  JOIN public.users AS author ON author.uuid = activity.user_uuid
) AS activity_json
