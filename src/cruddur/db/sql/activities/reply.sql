-- A reply by the signed-in user to the unexpired crud %(parent_uuid)s. One statement, so
-- one transaction: the parent's replies_count goes up exactly when the reply is stored
-- (the original never counted replies). The reply expires with its parent.
-- NULL: the parent does not exist or has expired. No row: the author is gone
-- (writer.sql). Either way nothing is written.
{{activities/reply_created}}
{{activities/created_json}}
