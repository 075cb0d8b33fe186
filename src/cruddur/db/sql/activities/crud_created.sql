-- A fragment, not a query: the start of a new crud's write (create.sql,
-- create_keyed.sql), its CTE `created`: the signed-in user's crud, expiring %(ttl)s
-- from now.
WITH created AS (
  INSERT INTO public.activities (user_uuid, message, expires_at)
  VALUES (%(user_uuid)s::uuid, %(message)s, current_timestamp + %(ttl)s::interval)
  RETURNING *
)
