-- Try the migration lock, in one statement on one server session. A session that holds
-- it already is a pooled one (a direct connection is new): an earlier run through an
-- undeclared transaction pooler left it there. It is let go here, where that session
-- answers (an unlock sent on its own may reach any other), and 'stray' says a pooler is
-- in front; taking it again would count a second hold, which one unlock leaves held.
SELECT CASE
  WHEN EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = %(high)s AND objid = %(low)s AND objsubid = 1
  ) THEN (SELECT 'stray' FROM (SELECT pg_advisory_unlock_all()) AS let_go)
  WHEN pg_try_advisory_lock(%(key)s) THEN 'taken'
  ELSE 'busy'
END
