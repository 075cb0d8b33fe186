"""Whether the pool's sessions refuse writes only because they began while the database
refused them.

`default_transaction_read_only` set by ALTER DATABASE or ALTER ROLE is read once, when
a session starts (a RESET in the session goes back to that start's value): after the
operator makes the database writable again, pooled sessions begun before went on
refusing every write (25006) until psycopg_pool replaced them, up to its max_lifetime
(an hour). Closing each session that refused a write would cost a new connection per
refused write for as long as the database stays read-only.

Instead, when a pooled session refuses a write (or health finds it read-only), one new
session, at most every LOOK_EVERY seconds and only one at a time, says whether the
database takes writes now. If it does, every pooled session is replaced at once (the
pool's drain: idle ones now, lent ones when given back). A hot standby refuses writes
in every session, new ones too, so nothing is replaced; on promotion the sessions it
has take writes at once. The other way round is not seen here: sessions begun before
the database was made read-only go on writing until the operator ends them
(pg_terminate_backend), as the usual recipe says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

log = logging.getLogger("cruddur.db")

# While the database refuses writes, at most one extra connection this often per
# process; once it takes them again, writes go in within about this much.
LOOK_EVERY = 1.0  # seconds
# How long a refused write waits for another thread's look (one new session) to answer:
# enough for a connection to open on a healthy network; a slower look is not waited for
# (each waiter holds its pooled connection meanwhile).
LOOK_WAIT = 0.5  # seconds


class ReadOnlyLook:
    """Asks a new session, now and then, whether the pooled sessions' refusal is stale.

    `new_session_writable()` opens a session as the pool would and says whether it
    takes writes; `renew()` replaces the pool's sessions.
    """

    def __init__(
        self,
        new_session_writable: Callable[[], bool],
        renew: Callable[[], None],
        *,
        every: float = LOOK_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._new_session_writable = new_session_writable
        self._renew = renew
        self._every = every
        self._clock = clock
        self._looking = threading.Lock()
        self._looked_at = -float("inf")
        self._writable = False  # what the last look found
        self.looks = 0

    def refused(self) -> bool:
        """A pooled session refused a write, or says it would: whether a new one takes
        writes (the sessions were then replaced). Looks at most once per `every`; a call
        meanwhile gets the last look's answer, and one while another thread looks waits
        for that look's (writes that failed together on old sessions are all told)."""
        if not self._looking.acquire(timeout=LOOK_WAIT):
            return self._writable
        try:
            if self._clock() - self._looked_at < self._every:
                return self._writable
            self.looks += 1
            try:
                writable = self._new_session_writable()
            except psycopg.Error as exc:
                # Not known: the next look, `every` later, asks again.
                log.debug("a look at whether the database takes writes failed: %s", exc)
                writable = False
            self._writable = writable
            # From the look's end: one slower than `every` (a session slow to open) was
            # followed at once by another, for the writes that had waited on it.
            self._looked_at = self._clock()
            if writable:
                log.warning(
                    "the database takes writes again: the pool's sessions, begun while"
                    " it was read-only, are being replaced"
                )
                self._renew()
            return writable
        finally:
            self._looking.release()
