-- Taken first in each purge batch's transaction, before purge_batch.sql: one batch at a
-- time on the database, whichever purge runs it (CLI, Lambda, pg_cron). A batch locks
-- only the rows it picks, and deletes the replies of its cruds unlocked: two at once
-- deleted each other's picked replies and each waited for the other's rows (deadlock).
-- Held until the batch commits, so batches take turns, each as short as before, and the
-- next batch's statement sees what the last one deleted. Transaction-level, so it holds
-- through a transaction pooler. The key is b"cruddur\x02" (migrations' lock is \x01).
SELECT pg_advisory_xact_lock(7165919031142478338);
