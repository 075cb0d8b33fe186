-- What the caller's Idempotency-Key %(key)s holds, once a keyed write found it used
-- (create_keyed.sql): the first request's fingerprint and answer.
SELECT fingerprint, response
FROM public.idempotency_keys
WHERE user_uuid = %(user_uuid)s::uuid
  AND key = %(key)s;
