-- What `cruddur db status` reports about the database it is connected to.
SELECT current_database() AS dbname,
       current_setting('server_version') AS server_version,
       CASE
         WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'uuid-ossp') THEN 'uuid-ossp'
         WHEN to_regprocedure('public.uuid_generate_v4()') IS NOT NULL
           THEN 'stand-in over gen_random_uuid()'
         WHEN EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'uuid-ossp')
           THEN 'uuid-ossp available, not installed'
         ELSE 'not available (the schema installs a stand-in)'
       END AS uuid_generate_v4
