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
  probe that connects ends it, after `on_back` has dropped the pool's dead connections;
- a server that answers but refuses new connections (no slot left, credentials no longer
  accepted) is there: while the pool holds connections they serve, new attempts wait
  REFUSED_RETRY after a refusal (REFUSED_RETRY_LATER once refusals have gone on for
  REFUSED_SLOWER_AFTER), and the reason is logged once per REFUSED_LOG_EVERY with a
  count. With none held, it is an outage like any other: 503s at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import psycopg

log = logging.getLogger("cruddur.db")

PROBE_INTERVAL = 0.2  # seconds between probes while the server is down
MAX_PROBES = 10  # probes in flight at once (PROBE_CONNECT_TIMEOUT / PROBE_INTERVAL)
# After the server refused a new connection, no other is tried for this long (the pool's
# growth retried with no pause: ~25 attempts and warnings a second per worker); short,
# since a slot that frees up or a credential that works again should serve at once.
REFUSED_RETRY = 0.5  # seconds
# Refusals that go on (a password rotated, nobody has told the service yet) are tried
# less often: at 0.5 s each worker made ~2.7 failed logins a second, a FATAL line each in
# the server's log, for as long as it lasted, with or without traffic.
REFUSED_SLOWER_AFTER = 10.0  # seconds of refusals, none accepted between
REFUSED_RETRY_LATER = 5.0  # seconds
REFUSED_LOG_EVERY = 10.0  # seconds between warnings about refused connections

CONNECTED, REFUSED, UNREACHABLE = "connected", "refused", "unreachable"


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


# The server's answer to bad credentials (28P01 invalid_password, 28000
# invalid_authorization_specification): NOLOGIN, a rotated password, an unknown role,
# pg_hba.conf. libpq gives these no SQLSTATE either.
_AUTH_WORDS = (
    "authentication failed",
    "is not permitted to log in",
    "pg_hba.conf",
)


def _auth_refused(exc: psycopg.Error) -> bool:
    text = str(exc).lower()
    if getattr(exc, "sqlstate", None) in ("28P01", "28000") or any(w in text for w in _AUTH_WORDS):
        return True
    return 'role "' in text and "does not exist" in text


def refusal(exc: BaseException) -> str | None:
    """What a server that refused a new connection said (it answered, so it is there),
    in its own words, never the connection string's; None for any other failure."""
    if not isinstance(exc, psycopg.Error):
        return None
    if isinstance(exc, ConnectionsRefused):
        return exc.reason
    if not (_full(exc) or _auth_refused(exc)):
        return None
    said = str(exc).split("FATAL:", 1)
    if len(said) == 2:  # the server's message: a role's name at most, never a password
        return " ".join(said[1].split("connection to server")[0].split())
    return "too many connections" if _full(exc) else "authentication failed"


class ConnectionsRefused(psycopg.OperationalError):
    """The server refused a new connection a moment ago: none is tried until
    REFUSED_RETRY has passed (raised by the pool without connecting)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the database refuses new connections: {reason}")
        self.reason = reason


class RefusedStreak:
    """How long the server has refused one thread's own connections in a row (credentials
    it no longer takes, no slot left): once `slower_after` seconds, its next attempt
    waits at least `later`, as a Reachability's do. For connections outside the pool (the
    feed cache's listener and notifier went on every 2 s: each worker's two of them six
    times the pool's rate of failed logins against a rotated password)."""

    def __init__(
        self, slower_after: float = REFUSED_SLOWER_AFTER, later: float = REFUSED_RETRY_LATER
    ) -> None:
        self.slower_after, self.later = slower_after, later
        self._since: float | None = None

    def wait(self, exc: BaseException, wait: float) -> float:
        """The wait before the next attempt, after one that failed with `exc`."""
        if refusal(exc) is None:
            self._since = None
            return wait
        now = time.monotonic()
        if self._since is None:
            self._since = now
        return max(wait, self.later) if now - self._since >= self.slower_after else wait

    def connected(self) -> None:
        self._since = None


class Reachability:
    def __init__(
        self,
        probe: Callable[[], None],
        on_back: Callable[[], None],
        *,
        interval: float = PROBE_INTERVAL,
        holding: Callable[[], bool] = lambda: True,
        patient_probe: Callable[[], None] | None = None,
        refused_retry: tuple[float, float, float] = (
            REFUSED_RETRY,
            REFUSED_SLOWER_AFTER,
            REFUSED_RETRY_LATER,
        ),
    ) -> None:
        self._probe = probe  # connects (and disconnects), or raises
        # The same, waiting as long as any connection may (CRUDDUR_CONNECT_TIMEOUT): for a
        # look with nothing failed yet, where a slow but sound server must not be taken
        # for one gone.
        self._patient_probe = patient_probe or probe
        self._on_back = on_back
        self._holding = holding  # whether the pool holds a connection that may serve
        self.interval = interval
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._checking: threading.Event | None = None  # a verify() in progress
        self._closed = threading.Event()
        self._refused_at = -math.inf  # time.monotonic() of the last refusal
        self._refusing_since = math.inf  # of the first refusal since a connection went in
        # The gap after a refusal; after how long of them the gap is the third.
        self._retry, self._slower_after, self._retry_later = refused_retry
        self._reason = ""
        self._refusals = 0  # since the last warning
        self._warned_at: float | None = None

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

    def verify(self, *, patient: bool = False) -> bool:
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
            # A refusal a moment ago (the pool's, or a probe's) is this probe's answer.
            result = REFUSED if self.holding_off() else self._attempt(patient)
            if result == CONNECTED:
                self._on_back()
            reachable = self._served(result)
            with self._lock:
                if not reachable:
                    self._go_down()
        finally:
            with self._lock:
                self._checking = None
            check.set()
        return reachable

    def verify_soon(self, *, patient: bool = False) -> None:
        """`verify()` in another thread, for callers that must not wait (the pool's)."""
        if self._down_since is None and self._checking is None and not self._closed.is_set():
            threading.Thread(
                target=self.verify, kwargs={"patient": patient}, name="cruddur-db-verify",
                daemon=True,
            ).start()  # fmt: skip

    def mark_down(self) -> None:
        """The caller's own connection attempt just failed: that was the probe."""
        with self._lock:
            if self._down_since is None:
                self._go_down()

    def close(self) -> None:
        self._closed.set()

    def holding_off(self) -> bool:
        """The server refused a new connection less than the retry gap ago."""
        return time.monotonic() - self._refused_at < self.retry_gap()

    def retry_gap(self) -> float:
        """REFUSED_RETRY; REFUSED_RETRY_LATER once refusals have lasted REFUSED_SLOWER_AFTER."""
        if self._refused_at - self._refusing_since >= self._slower_after:
            return self._retry_later
        return self._retry

    def refused(self, exc: BaseException) -> bool:
        """A connection attempt failed with `exc`: True if the server refused it (it is
        there), which is counted and, once in a while, logged with its reason."""
        reason = refusal(exc)
        if reason is None:
            return False
        if isinstance(exc, ConnectionsRefused):  # not an attempt: its refusal was counted
            return True
        now = time.monotonic()
        with self._lock:
            self._refused_at, self._reason = now, reason
            self._refusing_since = min(self._refusing_since, now)
            self._refusals += 1
            if self._warned_at is not None and now - self._warned_at < REFUSED_LOG_EVERY:
                return True
            count, self._refusals = self._refusals, 0
            since, self._warned_at = self._warned_at, now
        log.warning(
            "database refuses new connections (%s): %d refused%s; a new one is tried "
            "at most every %.1f s; the pool's open connections, if any, serve meanwhile",
            reason,
            count,
            "" if since is None else f" in the last {now - since:.0f} s",
            self.retry_gap(),
        )
        return True

    def connected(self) -> None:
        """A new connection succeeded: no more holding off."""
        if self._warned_at is not None:
            with self._lock:
                if self._warned_at is not None:
                    log.warning("database accepts new connections again")
                self._refused_at, self._warned_at, self._refusals = -math.inf, None, 0
                self._refusing_since = math.inf

    def refusal_error(self) -> ConnectionsRefused:
        return ConnectionsRefused(self._reason)

    def _served(self, result: str) -> bool:
        # Refused, but the pool holds connections: they serve; with none, requests
        # would each wait the pool's whole timeout for a connection not to be had.
        return result == CONNECTED or (result == REFUSED and self._holding())

    def _go_down(self) -> None:  # with self._lock held
        self._down_since = time.monotonic()
        refused = self.holding_off()
        log.warning(
            "database %s: answering at once until it is back (a probe every %.1f s)",
            f"refuses new connections ({self._reason}) and the pool holds none"
            if refused
            else "unreachable",
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
                if self._served(self._attempt()):
                    answered.set()
            finally:
                running.release()

        while not self._closed.wait(self.interval):
            if answered.is_set():
                break
            if self.holding_off():  # it refused a moment ago: not again before the gap
                continue
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

    def _attempt(self, patient: bool = False) -> str:
        try:
            (self._patient_probe if patient else self._probe)()
        except psycopg.Error as exc:
            if self.refused(exc):
                return REFUSED
            log.debug("database probe failed: %s", type(exc).__name__)
            return UNREACHABLE
        self.connected()
        return CONNECTED
