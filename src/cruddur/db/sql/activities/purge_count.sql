-- What `cruddur db purge-expired` would delete: cruds and replies that expired before
-- %(cutoff)s, less those waiting for an unexpired reply (purge_batch.sql's rule).
SELECT
  count(*) FILTER (WHERE expired.reply_to_activity_uuid IS NULL) AS cruds,
  count(*) FILTER (WHERE expired.reply_to_activity_uuid IS NOT NULL) AS replies
FROM public.activities AS expired
WHERE expired.expires_at < %(cutoff)s::timestamptz
  AND NOT EXISTS (
    SELECT FROM public.activities AS reply
    WHERE reply.reply_to_activity_uuid = expired.uuid
      AND reply.expires_at >= %(cutoff)s::timestamptz
  );
