-- Who holds the migration lock on this database: pid, application, client, since when.
SELECT a.pid, a.application_name, host(a.client_addr) AS client_addr, a.backend_start,
       a.state, a.query_start
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory'
  AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %(high)s AND l.objid = %(low)s AND l.objsubid = 1
LIMIT 1
