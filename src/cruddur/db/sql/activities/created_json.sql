-- A fragment, not a query: the end of a write (create.sql, reply.sql), the row its CTE
-- `created` inserted, as JSON in the feeds' shape.
{{activities/created_row_json}};
