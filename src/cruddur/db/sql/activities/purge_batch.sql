-- One batch of `cruddur db purge-expired`: up to %(batch_size)s activities that expired
-- before %(cutoff)s (fixed when the purge starts, so a crud expiring during the purge is
-- never touched), oldest expiry first through activities_expires_idx.
-- A crud with an unexpired reply waits (the API makes replies expire with their parent,
-- but older or imported rows may not): deleting it would delete the reply too, through
-- the foreign key. Rows another transaction has locked are left for the next run.
WITH doomed AS (
  SELECT expired.uuid
  FROM public.activities AS expired
  WHERE expired.expires_at < %(cutoff)s::timestamptz
    AND NOT EXISTS (
      SELECT FROM public.activities AS reply
      WHERE reply.reply_to_activity_uuid = expired.uuid
        AND reply.expires_at >= %(cutoff)s::timestamptz
    )
  ORDER BY expired.expires_at
  LIMIT %(batch_size)s
  FOR UPDATE OF expired SKIP LOCKED
),
-- Their replies (expired too, by the rule above) go in the same statement, so they are
-- counted here rather than removed unseen by the foreign key's cascade.
targets AS (
  SELECT uuid FROM doomed
  UNION
  SELECT reply.uuid
  FROM public.activities AS reply
  JOIN doomed ON reply.reply_to_activity_uuid = doomed.uuid
),
deleted AS (
  DELETE FROM public.activities
  USING targets
  WHERE activities.uuid = targets.uuid
  RETURNING activities.reply_to_activity_uuid IS NULL AS is_crud
)
SELECT
  count(*) FILTER (WHERE is_crud) AS cruds,
  count(*) FILTER (WHERE NOT is_crud) AS replies
FROM deleted;
