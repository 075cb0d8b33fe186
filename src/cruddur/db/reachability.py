"""Whether the database server answers; while it does not, callers are told at once.

psycopg_pool on its own makes every caller wait its whole timeout while the server is
down, and its background reconnection backs off further the longer the outage lasts
(measured on 54ec89e: attempts 7 → 15 → 19 s apart, first success up to 6.9 s after a
60 s outage ended). A `Reachability` takes that decision away from the pool:

- an outage is noticed by the first connection that breaks (or the pool giving up a
  reconnection), and confirmed by one direct connection attempt, the probe;
- while the server is down, `admit()` refuses at once with `DatabaseUnavailable`;
- one background thread starts a probe every `interval` seconds, however long the
  outage, each in a thread of its own (a probe into a black-holed path waits); the first
  probe that connects ends it, after `on_back` has dropped the pool's dead connections.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

log = logging.getLogger("cruddur.db")

PROBE_INTERVAL = 0.2  # seconds between probes while the server is down
MAX_PROBES = 10  # probes in flight at once (PROBE_CONNECT_TIMEOUT / PROBE_INTERVAL)


class DatabaseUnavailable(psycopg.OperationalError):
    """The database did not answer the last probe; nothing was tried for this call."""


# SQLSTATE 53300 (too_many_connections): max_connections or a role's or database's
# CONNECTION LIMIT reached; PgBouncer's max_client_conn. libpq reports a refused
# connection with no SQLSTATE, so the server's (or the pooler's) words are looked for.
_FULL_WORDS = (
    "too many clients",
    "too many connections",
    "connection slots are reserved",
    "no more connections allowed",  # PgBouncer
)


def _full(exc: psycopg.Error) -> bool:
    """A server answered that it is full, in any of the attempts libpq made: with several
    addresses (host=a,b; `localhost` as ::1 and 127.0.0.1) one may refuse while the
    other is full, and the pool's connections to that one still serve."""
    text = str(exc).lower()
    return getattr(exc, "sqlstate", None) == "53300" or any(w in text for w in _FULL_WORDS)


class Reachability:
    def __init__(
        self,
        probe: Callable[[], None],
        on_back: Callable[[], None],
        *,
        interval: float = PROBE_INTERVAL,
    ) -> None:
        self._probe = probe  # connects (and disconnects), or raises
        self._on_back = on_back
        self.interval = interval
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._checking: threading.Event | None = None  # a verify() in progress
        self._closed = threading.Event()

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def admit(self) -> None:
        """Return while the server is thought reachable; raise DatabaseUnavailable if not."""
        since = self._down_since
        if since is not None:
            raise DatabaseUnavailable(
                f"the database has not answered for {time.monotonic() - since:.1f} s"
            )

    def verify(self) -> bool:
        """A connection just failed: does the server still answer? One probe serves all
        the callers that ask at the same time. True: it answers, and the pool's dead
        connections are gone. False: it is down, and probing goes on in the background."""
        with self._lock:
            if self._down_since is not None:
                return False
            check = self._checking
            mine = check is None
            if mine:
                check = self._checking = threading.Event()
        if not mine:
            check.wait()
            return self._down_since is None
        try:
            reachable = self._answers()
            if reachable:
                self._on_back()
            with self._lock:
                if not reachable:
                    self._go_down()
        finally:
            with self._lock:
                self._checking = None
            check.set()
        return reachable

    def verify_soon(self) -> None:
        """`verify()` in another thread, for callers that must not wait (the pool's)."""
        if self._down_since is None and self._checking is None and not self._closed.is_set():
            threading.Thread(target=self.verify, name="cruddur-db-verify", daemon=True).start()

    def mark_down(self) -> None:
        """The caller's own connection attempt just failed: that was the probe."""
        with self._lock:
            if self._down_since is None:
                self._go_down()

    def close(self) -> None:
        self._closed.set()

    def _go_down(self) -> None:  # with self._lock held
        self._down_since = time.monotonic()
        log.warning(
            "database unreachable: answering at once until it is back (a probe every %.1f s)",
            self.interval,
        )
        threading.Thread(
            target=self._probe_until_back, name="cruddur-db-probe", daemon=True
        ).start()

    def _probe_until_back(self) -> None:
        # A new probe every interval, without waiting for the last one to fail: against a
        # black-holed path a probe's SYN is lost and its connection attempt waits out the
        # kernel's 1 s SYN retransmission (or its 2 s connect_timeout), so one probe at a
        # time would find the path restored up to 2 s late. At most MAX_PROBES at once.
        answered = threading.Event()
        running = threading.Semaphore(MAX_PROBES)

        def probe() -> None:
            try:
                if self._answers():
                    answered.set()
            finally:
                running.release()

        while not self._closed.wait(self.interval):
            if answered.is_set():
                break
            if running.acquire(blocking=False):
                threading.Thread(target=probe, name="cruddur-db-probe-1", daemon=True).start()
            if answered.wait(0):
                break
        if self._closed.is_set():
            return
        try:
            self._on_back()
        except Exception:  # the pool's own check; the next request finds out anew
            log.exception("database back, but dropping the pool's dead connections failed")
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning("database reachable again after %.1f s", time.monotonic() - since)

    def _answers(self) -> bool:
        try:
            self._probe()
        except psycopg.Error as exc:
            if _full(exc):
                # It answered: busy, not away. Taken for an outage, every request got a
                # 503 "not reachable" (and health said so) while the pool's open
                # connections could serve them, and a worker stayed so after slots
                # freed up; the requests now wait for those connections instead.
                log.warning("database refuses new connections (too many): %s", exc)
                return True
            log.debug("database probe failed: %s", type(exc).__name__)
            return False
        return True
