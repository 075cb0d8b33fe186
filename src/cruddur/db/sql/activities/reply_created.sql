-- A fragment, not a query: the start of a reply's write (reply.sql, reply_keyed.sql),
-- its CTEs: `parent`, the unexpired crud %(parent_uuid)s with its replies_count raised,
-- and `created`, the reply, expiring with it. No parent, no reply.
WITH parent AS (
  UPDATE public.activities
  SET replies_count = replies_count + 1
  WHERE uuid = %(parent_uuid)s::uuid
    AND expires_at > current_timestamp
  RETURNING uuid, expires_at
),
created AS (
  INSERT INTO public.activities (user_uuid, message, reply_to_activity_uuid, expires_at)
  SELECT %(user_uuid)s::uuid, %(message)s, parent.uuid, parent.expires_at
  FROM parent
  RETURNING *
)
