-- A fragment, not a query: the start of a new crud's write (create.sql,
-- create_keyed.sql), its CTEs: `writer` (writer.sql), and `created`, the signed-in
-- user's crud, expiring %(ttl)s from now. No writer, no crud.
{{activities/writer}},
created AS (
  INSERT INTO public.activities (user_uuid, message, expires_at)
  SELECT writer.uuid, %(message)s, current_timestamp + %(ttl)s::interval
  FROM writer
  RETURNING *
)
