-- A replica's state, for the API's read routing and `db status`. Lag is the age of the
-- last replayed transaction while WAL waits to be replayed (NULL, not known, when it has
-- replayed none since it started), and 0 when all that arrived is replayed (an idle
-- primary sends nothing, and its replica is not behind).
-- replay_age is that age whatever waits: a replica cut off from its primary has
-- replayed all that arrived, yet its data is as old as its last transaction. The API's
-- lag clock takes it while it has no sample of the primary old enough to say more.
-- The lag here is only the replica's own view: a replica holding WAL past the primary's
-- position (another history: the primary restored from a backup) has replayed all it
-- received and says 0. The received position, the cluster and the database let the
-- caller compare it with the primary's (replication.not_following).
SELECT
    pg_is_in_recovery() AS in_recovery,
    pg_last_wal_replay_lsn()::text AS replayed_lsn,
    pg_last_wal_receive_lsn()::text AS received_lsn,
    (SELECT system_identifier FROM pg_control_system())::text AS cluster,
    (SELECT oid FROM pg_database WHERE datname = current_database())::text AS database,
    -- The timeline of the WAL it last received, where the role may read it (superusers,
    -- pg_read_all_stats); else its last restartpoint's, which follows a switch of
    -- timeline only at the next restartpoint (up to checkpoint_timeout later). Either
    -- may be behind its own, so only one past the primary's says anything.
    COALESCE(
        (SELECT received_tli FROM pg_stat_wal_receiver),
        (SELECT timeline_id FROM pg_control_checkpoint())
    ) AS timeline,
    CASE
        WHEN NOT pg_is_in_recovery() THEN NULL
        -- Not streaming (WAL from an archive): its last transaction's age, as ever.
        WHEN pg_last_wal_receive_lsn() IS NULL THEN COALESCE(
            extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8, 0.0
        )
        -- Nothing received past what it replayed; after a restart the received position is
        -- its segment's start, behind the replayed one, until the primary sends more.
        WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0.0
        ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
    END AS lag_seconds,
    extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
        AS replay_age;
