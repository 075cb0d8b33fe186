-- Has this replica replayed the primary's WAL up to %(lsn)s?
SELECT COALESCE(pg_last_wal_replay_lsn() >= %(lsn)s::pg_lsn, false);
