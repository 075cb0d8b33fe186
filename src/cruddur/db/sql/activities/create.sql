-- A new crud by the signed-in user, expiring %(ttl)s from now; returns it as JSON,
-- in the same shape as the feeds.
{{activities/crud_created}}
{{activities/created_json}}
