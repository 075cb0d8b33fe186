-- The purge's cutoff: the server's now, less the grace period %(grace)s.
SELECT current_timestamp - %(grace)s::interval;
