-- One batch of `cruddur db purge-expired`: up to %(batch_size)s activities that expired
-- before %(cutoff)s (fixed when the purge starts, so a crud expiring during the purge is
-- never touched), oldest expiry first through activities_expires_idx.
-- A crud with an unexpired reply, or an unexpired reply to one of its replies at any
-- depth, waits (the API makes replies expire with their parent, but older or imported
-- rows may not): deleting it would delete that reply too, through the foreign key. (The
-- test is purge_count.sql's too, written out in both: the Lambda reads this file as it
-- is, without fragments.) Rows another transaction has locked are left for the next run.
-- Run it after purge_lock.sql, in the same transaction: two batches at once deadlocked.
-- Run it with jit = off (ops/purge.py, the Lambda): the cost estimates of the checks
-- below are far above jit_above_cost, and compiling the plan took longer than running it.
WITH RECURSIVE doomed AS (
  SELECT expired.uuid, expired.reply_to_activity_uuid AS parent
  FROM public.activities AS expired
  WHERE expired.expires_at < %(cutoff)s::timestamptz
    AND NOT EXISTS (
      WITH RECURSIVE below AS (
        SELECT reply.uuid, reply.expires_at
        FROM public.activities AS reply
        WHERE reply.reply_to_activity_uuid = expired.uuid
        UNION
        -- Each reply's replies by activities_replies_idx (the fenced lateral, as below):
        -- on a table never analyzed, a join here sorted the whole table for every row.
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
    )
  ORDER BY expired.expires_at
  LIMIT %(batch_size)s
  FOR UPDATE OF expired SKIP LOCKED
),
-- Their replies at every depth (expired too, by the rule above) go in the same
-- statement, so they are counted here rather than removed unseen by the cascade.
-- The planner guesses ten times the batch for each level and would hash every reply in
-- the table to find them; the fenced lateral (OFFSET 0 keeps it from being flattened
-- into that join) looks each batch row up in activities_replies_idx instead.
-- Started from the batch's rows whose parent is not one of them (the others are reached
-- from it): from each, a reply chain all in the batch was walked again at every depth.
targets AS (
  SELECT doomed.uuid, 0 AS depth
  FROM doomed
  WHERE NOT EXISTS (SELECT FROM doomed AS parent WHERE parent.uuid = doomed.parent)
  UNION
  SELECT reply.uuid, targets.depth + 1
  FROM targets
  CROSS JOIN LATERAL (
    SELECT child.uuid
    FROM public.activities AS child
    WHERE child.reply_to_activity_uuid = targets.uuid
    OFFSET 0
  ) AS reply
),
-- At most %(batch_size)s rows a batch, deepest first: a crud with 150,000 replies was one
-- batch of 150,001 rows, past the Lambda's statement timeout, and every run failed on it
-- again. Every row deeper than one taken is taken too, so what is deleted holds every
-- reply of each of its rows (nothing more goes by the cascade), and a thread too large
-- for one batch goes in several, its crud last. A row reached twice (below a row the
-- batch's LIMIT left out) counts once, at its greatest depth: a reply's is one more than
-- its parent's, so the rule holds.
batch AS (
  SELECT uuid FROM targets GROUP BY uuid ORDER BY max(depth) DESC LIMIT %(batch_size)s
),
-- By primary key, from the batch's uuids: a join to the CTE, estimated at 100 times its
-- size, was a hash join over a scan of the whole table.
deleted AS (
  DELETE FROM public.activities
  WHERE activities.uuid = ANY (ARRAY(SELECT uuid FROM batch))
  RETURNING activities.reply_to_activity_uuid AS parent,
            activities.reply_to_activity_uuid IS NULL AS is_crud
),
-- A parent that stays (not expired: older or imported replies may expire before it; or
-- left for the next batch) counts the replies it lost, as reply.sql counted them in.
-- Parents deleted here are left out: one statement must not both update and delete a row.
recounted AS (
  UPDATE public.activities AS parent
  SET replies_count = greatest(parent.replies_count - lost.replies, 0)
  FROM (
    SELECT deleted.parent, count(*) AS replies
    FROM deleted
    WHERE deleted.parent IS NOT NULL
      AND NOT EXISTS (SELECT FROM batch WHERE batch.uuid = deleted.parent)
    GROUP BY deleted.parent
  ) AS lost
  WHERE parent.uuid = lost.parent
)
SELECT
  count(*) FILTER (WHERE is_crud) AS cruds,
  count(*) FILTER (WHERE NOT is_crud) AS replies
FROM deleted;
