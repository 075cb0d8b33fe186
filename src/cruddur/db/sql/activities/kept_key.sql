-- What the caller's unexpired Idempotency-Key %(key)s holds, once a keyed write found it
-- used (create_keyed.sql) or found nothing to write to (reply_keyed.sql: its crud
-- expired or gone since): the first request's fingerprint and answer.
SELECT fingerprint, response
FROM public.idempotency_keys
WHERE user_uuid = %(user_uuid)s::uuid
  AND key = %(key)s
  AND expires_at > current_timestamp;
