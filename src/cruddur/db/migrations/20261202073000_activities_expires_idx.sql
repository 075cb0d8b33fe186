-- `cruddur db purge-expired` finds expired cruds by expires_at, a batch at a time; without
-- an index each batch would read the whole table. Built CONCURRENTLY: on a live
-- database, inserts go on while it builds.
-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY IF NOT EXISTS activities_expires_idx
  ON public.activities (expires_at);

-- migrate:down transaction:false
DROP INDEX CONCURRENTLY IF EXISTS public.activities_expires_idx;
