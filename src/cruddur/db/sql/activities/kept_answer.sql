-- A fragment, not a query: the end of a keyed write (create_keyed.sql, reply_keyed.sql),
-- after its CTEs `writer` and `created`. The row's JSON (created_row_json.sql) is kept
-- under (%(user_uuid)s, %(key)s) with the request's %(fingerprint)s, and returned: one
-- row per `writer`, as created_json.sql, so no row when the author is gone, and a row
-- holding NULL when nothing was written.
-- Expired keys go here, as keyed writes come: the caller's own %(key)s, so it can be
-- used again, and up to two others, oldest first (each keyed write adds one row, so
-- the table holds about a day of keyed writes; rows another write has locked are left).
-- `remembered` reads `stale`, so the DELETE runs first and the INSERT does not meet the
-- expired row it removed.
answer (body) AS (
  {{activities/created_row_json}}
),
stale AS (
  DELETE FROM public.idempotency_keys AS kept
  WHERE kept.expires_at <= current_timestamp
    AND (
      (kept.user_uuid = %(user_uuid)s::uuid AND kept.key = %(key)s)
      OR (kept.user_uuid, kept.key) IN (
        SELECT oldest.user_uuid, oldest.key
        FROM public.idempotency_keys AS oldest
        WHERE oldest.expires_at <= current_timestamp
        ORDER BY oldest.expires_at
        LIMIT 2
        FOR UPDATE SKIP LOCKED
      )
    )
  RETURNING 1
),
remembered AS (
  INSERT INTO public.idempotency_keys (user_uuid, key, fingerprint, response)
  SELECT %(user_uuid)s::uuid, %(key)s, %(fingerprint)s, answer.body
  FROM answer, (SELECT count(*) FROM stale) AS removed
  RETURNING response
)
SELECT (SELECT response FROM remembered)
FROM writer;
