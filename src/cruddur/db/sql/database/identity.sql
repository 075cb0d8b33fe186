-- Which cluster, and which database in it, a connection reached. Two URLs that give the
-- same pair reach one database, however each names its server (a pooler, an endpoint);
-- a replica gives its primary's.
SELECT (SELECT system_identifier FROM pg_control_system())::text AS cluster,
       d.oid::bigint AS database_oid
FROM pg_database d
WHERE d.datname = current_database()
