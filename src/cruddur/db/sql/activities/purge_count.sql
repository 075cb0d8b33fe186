-- What `cruddur db purge-expired` would delete: cruds and replies that expired before
-- %(cutoff)s, less those waiting for an unexpired reply at any depth below them
-- (purge_batch.sql's rule).
SELECT
  count(*) FILTER (WHERE expired.reply_to_activity_uuid IS NULL) AS cruds,
  count(*) FILTER (WHERE expired.reply_to_activity_uuid IS NOT NULL) AS replies
FROM public.activities AS expired
WHERE expired.expires_at < %(cutoff)s::timestamptz
  AND NOT EXISTS (
    WITH RECURSIVE below AS (
      SELECT reply.uuid, reply.expires_at
      FROM public.activities AS reply
      WHERE reply.reply_to_activity_uuid = expired.uuid
      UNION
      -- Each reply's replies by activities_replies_idx (purge_batch.sql says why).
      SELECT deeper.uuid, deeper.expires_at
      FROM below
      CROSS JOIN LATERAL (
        SELECT child.uuid, child.expires_at
        FROM public.activities AS child
        WHERE child.reply_to_activity_uuid = below.uuid
        OFFSET 0
      ) AS deeper
    )
    SELECT FROM below WHERE below.expires_at >= %(cutoff)s::timestamptz
  );
