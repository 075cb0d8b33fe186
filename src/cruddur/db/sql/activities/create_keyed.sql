-- create.sql with an Idempotency-Key: the new crud, and the key's row holding its JSON,
-- in one statement, so both are stored or neither. A key the caller has used already
-- (committed, or by a statement still running, which this one waits for) fails it on
-- idempotency_keys_pkey with nothing stored: services/activities.py then answers from
-- the row that is there. No row: the author is gone (writer.sql), nothing stored.
{{activities/crud_created}},
{{activities/kept_answer}}
