-- A fragment, not a query: the end of a write (create.sql, reply.sql), the row its CTE
-- `created` inserted, as JSON in the feeds' shape: one row per `writer` (writer.sql), so
-- no row when the author is gone, and a row holding NULL when nothing was written
-- (a reply's parent missing or expired).
SELECT (
  {{activities/created_row_json}}
)
FROM writer;
