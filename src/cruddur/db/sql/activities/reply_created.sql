-- A fragment, not a query: the start of a reply's write (reply.sql, reply_keyed.sql),
-- its CTEs: `writer` (writer.sql); `parent`, the unexpired crud %(parent_uuid)s with its
-- replies_count raised; and `created`, the reply, expiring with it. No parent, no reply;
-- no writer, neither: the count goes up only with a reply.
{{activities/writer}},
parent AS (
  UPDATE public.activities
  SET replies_count = replies_count + 1
  WHERE uuid = %(parent_uuid)s::uuid
    -- The time now, not the transaction's start: a reply that waited for the parent's
    -- row lock (another reply's) is checked again once it has it, and one whose parent
    -- expired meanwhile was stored against it, a 201 to a crud already gone.
    AND expires_at > clock_timestamp()
    AND EXISTS (SELECT FROM writer)
  RETURNING uuid, expires_at
),
created AS (
  INSERT INTO public.activities (user_uuid, message, reply_to_activity_uuid, expires_at)
  SELECT writer.uuid, %(message)s, parent.uuid, parent.expires_at
  FROM parent, writer
  RETURNING *
)
