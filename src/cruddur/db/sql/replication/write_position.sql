-- Where the primary's WAL is inserted up to now: after a commit, at or past that
-- commit's record, whatever synchronous_commit says (with it off, the record may not be
-- written out yet, and pg_current_wal_lsn() stood before it: a replica that had replayed
-- that far was taken as having the write). A replica that has replayed this far sees the
-- write (X-Read-After).
SELECT pg_current_wal_insert_lsn()::text;
