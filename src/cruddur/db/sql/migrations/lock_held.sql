-- Whether this very session holds the migration lock (a transaction pooler may have sent
-- this statement to another server session than the one that took it).
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = %(high)s AND objid = %(low)s AND objsubid = 1
)
