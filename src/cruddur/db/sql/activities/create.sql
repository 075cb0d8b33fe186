-- A new crud by the signed-in user, expiring %(ttl)s from now; returns it as JSON,
-- in the same shape as the feeds. No row: the author is gone (writer.sql), nothing
-- written.
{{activities/crud_created}}
{{activities/created_json}}
