-- The primary as the replica's watcher and `db status` sample it: where its WAL is written
-- up to now (as write_position.sql), which database cluster it is, and which database of
-- it (a replica's databases keep their primary's oids). A replica that holds WAL past this
-- position, or of another cluster, or a URL naming another database on it, is not
-- following this primary's database. Its timeline is the one it writes on now (the WAL
-- file name's first 8 hex digits): a replica on a later one follows a server promoted
-- away from it.
SELECT pg_current_wal_lsn()::text AS written_lsn,
       (SELECT system_identifier FROM pg_control_system())::text AS cluster,
       (SELECT oid FROM pg_database WHERE datname = current_database())::text AS database,
       pg_walfile_name(pg_current_wal_lsn()) AS wal_file;
