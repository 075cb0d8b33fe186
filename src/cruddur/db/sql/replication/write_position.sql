-- Where the primary's WAL is written up to now: after a commit (synchronous_commit on,
-- the default), at or past that commit's record. A replica that has replayed this far
-- sees the write (X-Read-After).
SELECT pg_current_wal_lsn()::text;
