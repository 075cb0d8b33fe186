-- Earlier fake users; their cruds (and any replies to those) go with them (ON DELETE CASCADE).
-- So do their replies to rows that stay (a seed crud a fake user answered through the
-- API): those parents count the replies they lose, as purge_batch.sql's `recounted` does;
-- left alone, their replies_count stayed too high for good.
WITH fake AS (
  SELECT uuid FROM public.users WHERE cognito_user_id LIKE %(pattern)s
),
-- The fake users' replies to a real user's crud or reply, by parent. From the real users'
-- side: the fake rows are most of the table, and this is one index lookup a real row.
answered AS (
  SELECT parent.uuid AS parent, count(*) AS replies
  FROM public.users AS author
  JOIN public.activities AS parent ON parent.user_uuid = author.uuid
  JOIN public.activities AS reply ON reply.reply_to_activity_uuid = parent.uuid
  WHERE author.cognito_user_id NOT LIKE %(pattern)s
    AND reply.user_uuid IN (SELECT uuid FROM fake)
  GROUP BY parent.uuid
),
-- Only parents that stay: no row above one is a fake user's (the cascade takes a real
-- reply to a fake crud). One statement must not both update and delete a row.
recounted AS (
  UPDATE public.activities AS parent
  SET replies_count = greatest(parent.replies_count - answered.replies, 0)
  FROM answered
  WHERE parent.uuid = answered.parent
    AND NOT EXISTS (
      WITH RECURSIVE above AS (
        SELECT up.user_uuid, up.reply_to_activity_uuid
        FROM public.activities AS up
        WHERE up.uuid = parent.reply_to_activity_uuid
        UNION ALL
        SELECT higher.user_uuid, higher.reply_to_activity_uuid
        FROM public.activities AS higher
        JOIN above ON higher.uuid = above.reply_to_activity_uuid
      )
      SELECT FROM above WHERE above.user_uuid IN (SELECT uuid FROM fake)
    )
)
DELETE FROM public.users WHERE uuid IN (SELECT uuid FROM fake)
