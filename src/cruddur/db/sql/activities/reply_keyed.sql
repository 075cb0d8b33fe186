-- reply.sql with an Idempotency-Key: the reply, its parent's count and the key's row
-- holding the reply's JSON, in one statement, so all are stored or none
-- (create_keyed.sql says what a key used already does). NULL: the parent does not
-- exist or has expired; no row: the author is gone (writer.sql). Either way nothing is
-- kept for the key (a retry tries again).
{{activities/reply_created}},
{{activities/kept_answer}}
