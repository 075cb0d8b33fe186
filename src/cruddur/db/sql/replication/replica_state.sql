-- A replica's state, for the API's read routing and `db status`. Lag is the age of the
-- last replayed transaction while WAL waits to be replayed (NULL, not known, when it has
-- replayed none since it started), and 0 when all that arrived is replayed (an idle
-- primary sends nothing, and its replica is not behind).
-- replay_age is that age whatever waits: a replica cut off from its primary has
-- replayed all that arrived, yet its data is as old as its last transaction. The API's
-- lag clock takes it while it has no sample of the primary old enough to say more.
SELECT
    pg_is_in_recovery() AS in_recovery,
    pg_last_wal_replay_lsn()::text AS replayed_lsn,
    CASE
        WHEN NOT pg_is_in_recovery() THEN NULL
        WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0.0
        ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
    END AS lag_seconds,
    extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
        AS replay_age;
