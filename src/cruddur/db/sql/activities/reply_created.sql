-- A fragment, not a query: the start of a reply's write (reply.sql, reply_keyed.sql),
-- its CTEs: `writer` (writer.sql); `parent`, the unexpired crud %(parent_uuid)s with its
-- replies_count raised; and `created`, the reply, expiring with it. No parent, no reply;
-- no writer, neither: the count goes up only with a reply.
{{activities/writer}},
parent AS (
  UPDATE public.activities
  SET replies_count = replies_count + 1
  WHERE uuid = %(parent_uuid)s::uuid
    AND expires_at > current_timestamp
    AND EXISTS (SELECT FROM writer)
  RETURNING uuid, expires_at
),
created AS (
  INSERT INTO public.activities (user_uuid, message, reply_to_activity_uuid, expires_at)
  SELECT writer.uuid, %(message)s, parent.uuid, parent.expires_at
  FROM parent, writer
  RETURNING *
)
