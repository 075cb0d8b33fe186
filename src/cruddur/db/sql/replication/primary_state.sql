-- The primary as the replica's watcher and `db status` sample it: where its WAL is written
-- up to now (as write_position.sql) and which database cluster it is. A replica that holds
-- WAL past this position, or of another cluster, is not following this primary.
SELECT pg_current_wal_lsn()::text AS written_lsn,
       (SELECT system_identifier FROM pg_control_system())::text AS cluster;
