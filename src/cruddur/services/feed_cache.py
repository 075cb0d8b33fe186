"""The home feed's first page, kept in each worker and rebuilt when it changes.

Everyone reads the same first page, so each worker keeps it (one copy per `limit`)
instead of asking PostgreSQL every time. A copy is dropped:
- when a worker writes: its own copies at once, and every other worker's as soon as a
  NOTIFY on `cruddur_feed` reaches it (`FeedNotifier` sends it, `FeedChanges` LISTENs;
  milliseconds, and the tests hold it to 100 ms); within one `cruddur serve`, before the
  write's 201 goes out: the writer stores new bytes in memory the workers share
  (last_write.py), and a copy made before them is stale;
- when a crud on it (or the one after it) expires: a copy lives no longer than its
  earliest `expires_at`;
- after `max_age` (1 s) whatever happens: the bound for changes made outside the API
  (psql, a deleted user) and for a notification lost on a connection that died without
  a sign. A purge deletes only cruds no feed shows; it lowers the reply count of a live
  crud whose expired reply it deletes, shown within this bound.
- and nothing is kept while the listening connection is down (a database restart, a
  failover): every request reads the database until it listens again, and everything
  kept from before is dropped then, since notifications may have been missed.

NOTIFY reaches only sessions on the server where the write committed, so the listener
connects to the primary (CONNECTION_URL, or CRUDDUR_LISTEN_URL): never to a read
replica, and never through a pooler in transaction mode (PgBouncer) or RDS Proxy (a
LISTEN pins the proxy's session to one connection; it works, but a direct endpoint is
what a listener needs).

Why the API sends the NOTIFY, and not a trigger in the write's own transaction:
PostgreSQL holds a database-wide lock from a notifying transaction's pre-commit until
its commit is flushed, so notifying transactions commit one at a time: a statement
trigger cut pgbench inserts to 7% (bench/notify_commit.py, README "Measured").
`FeedNotifier` sends its NOTIFY in a transaction of its own with
synchronous_commit off (nothing to flush: it holds that lock for microseconds), from a
thread, after the write has answered, and folds the writes of the meantime into one.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from cruddur import connecting
from cruddur.db.dead_peer import with_dead_peer_bounds
from cruddur.db.errors import redacted_reason
from cruddur.db.reachability import RefusedStreak
from cruddur.services.last_write import NO_WRITES, SIZE, LastWrite
from cruddur.services.paging import Page

log = logging.getLogger("cruddur.feed_cache")

CHANNEL = "cruddur_feed"
MAX_AGE_SECONDS = 1.0  # the bound on any copy's life
BUILD_WAIT_SECONDS = 0.5  # a request waits this long at most for another's rebuild
RECONNECT_AFTER_SECONDS = (0.1, 2.0)  # the first wait after a failure, and the longest
# One wait for notifications; then it checks whether to stop. stop() waits up to this
# for the thread (each test's app, each worker at shutdown): 1 s made every test that
# used the feed cache 1 s longer. psycopg wakes every 0.1 s inside the wait anyway.
WAIT_SECONDS = 0.1


def etag_of(page: Page) -> str:
    """A strong ETag for a page's response: a digest of its body (128 bits of SHA-256,
    which OpenSSL computes with the CPU's SHA instructions: on this machine 6 µs for an
    8 kB page against 9 µs for CPython's own BLAKE2b) and of whether a next page follows.

    The Link to the next page is part of the answer, and can go while the body stays the
    same (the row after the page expires): a 304 would keep the stale Link. Where the
    next page starts is in the body already (its last row), so one flag is enough."""
    digest = hashlib.sha256(page.body)
    if page.next is not None:
        digest.update(b"\0next")
    return '"' + digest.hexdigest()[:32] + '"'


class FeedChanges:
    """A generation number that moves whenever the feed may have changed.

    A daemon thread holds one connection that LISTENs on `cruddur_feed`; each
    notification, each (re)connection and each local `bump()` moves the generation on.
    `listening` is False while that connection is down.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        connect_timeout: int = 5,
        reconnect_after: tuple[float, float] = RECONNECT_AFTER_SECONDS,
        refused: RefusedStreak | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        self.reconnect_after = reconnect_after
        self.refused = refused or RefusedStreak()
        self.generation = 0
        self.listening = False
        # One warning an outage, or for a URL it never listens on, not one each attempt;
        # then one line when it listens.
        self._said = False
        self._connected = False  # this attempt's connection is up (for the reason's words)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def bump(self) -> None:
        with self._lock:
            self.generation += 1

    def start(self) -> FeedChanges:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="feed-changes", daemon=True)
            self._thread.start()
        return self

    def wait_listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.listening and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.listening

    def stop(self) -> None:
        self._stop.set()  # seen within WAIT_SECONDS
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        first, longest = self.reconnect_after
        wait = first
        while not self._stop.is_set():
            self._connected = False
            pause = wait
            try:
                self._listen()
            except psycopg.Error as exc:
                pause = self.refused.wait(exc, wait)
                # Never str(exc): libpq's message can quote the conninfo.
                reason = redacted_reason(exc, connected=self._connected)
                if self.listening:  # it was up: lost, not unreachable
                    log.warning("feed cache off until it listens again: %s", reason)
                    self._said, wait = True, first
                elif not self._said:
                    # A URL that never lets it listen (a typo in CRUDDUR_LISTEN_URL, a
                    # standby, which refuses LISTEN) kept the cache off without a word.
                    log.warning("feed cache off until it can listen: %s", reason)
                    self._said = True
            finally:
                self.listening = False
                self.bump()
            self._stop.wait(pause)
            wait = min(wait * 2, longest)

    def _listen(self) -> None:
        with connecting.connect(
            # A dead peer is noticed in seconds even without a FIN (the copies' 1 s bound
            # covers the meantime); the URL's own keepalive settings win.
            with_dead_peer_bounds(self.conninfo),
            autocommit=True,
            connect_timeout=self.connect_timeout,
            application_name="cruddur-feed-listener",
        ) as conn:
            self._connected = True
            self.refused.connected()
            conn.execute(f"LISTEN {CHANNEL}")
            self.bump()  # whatever was kept before may have missed notifications
            self.listening = True
            if self._said:
                log.info("feed cache on: listening")
                self._said = False
            while not self._stop.is_set():
                for _ in conn.notifies(timeout=WAIT_SECONDS, stop_after=1):
                    self.bump()


class FeedNotifier:
    """Tells every worker the feed changed: NOTIFY `cruddur_feed`, from a thread.

    `changed()` only sets a flag (and counts), so a write's request does not wait for it;
    the thread sends one NOTIFY for all the writes since its last one, then waits
    `min_interval` for each write that NOTIFY covered, `max_interval` at most: a lone
    write is announced within a few ms, and a steady stream of them costs one NOTIFY per
    `max_interval` (both well inside the 100 ms promise). Each NOTIFY wakes this thread,
    a database transaction and every worker's listener: at 5 ms apart under a write
    load they cost the writes about a tenth of their rate (README, "Writes").
    """

    def __init__(
        self,
        conninfo: str,
        *,
        connect_timeout: int = 5,
        min_interval: float = 0.005,
        max_interval: float = 0.025,
        reconnect_after: tuple[float, float] = RECONNECT_AFTER_SECONDS,
        refused: RefusedStreak | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.reconnect_after = reconnect_after
        self.refused = refused or RefusedStreak()
        self.sent = 0
        # Writes since the last NOTIFY. Updated without a lock: a count lost to a race
        # only shortens one wait.
        self.writes = 0
        self._pending = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> FeedNotifier:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="feed-notifier", daemon=True)
                self._thread.start()
        return self

    def changed(self) -> None:
        self.writes += 1
        # Under a burst of writes the flag is mostly set already: a read of it is cheaper
        # than Event.set's lock and notify_all.
        if not self._pending.is_set():
            self._pending.set()

    def stop(self) -> None:
        self._stop.set()
        self._pending.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        first, longest = self.reconnect_after
        wait = first
        # A connection lost as a NOTIFY went out is tried again at once, once in a row: it
        # is found only then, at the first write after a restart, when the server is back
        # already; waiting `first` left that write out of the other workers' copies for
        # 100-120 ms after every restart.
        at_once = True
        paused = False  # said so in the log, and not yet that a NOTIFY went out again
        while not self._stop.is_set():
            up = False  # this attempt's connection: a failure after it is a lost one
            pause = None
            try:
                with connecting.connect(
                    with_dead_peer_bounds(self.conninfo),  # a NOTIFY into a black hole ends
                    autocommit=True,
                    connect_timeout=self.connect_timeout,
                    application_name="cruddur-feed-notifier",
                    options="-c synchronous_commit=off",
                ) as conn:
                    wait, up = first, True
                    self.refused.connected()
                    while not self._stop.is_set():
                        self._pending.wait()
                        if self._stop.is_set():
                            return
                        self._pending.clear()
                        covered, self.writes = self.writes, 0
                        conn.execute(f"NOTIFY {CHANNEL}")
                        self.sent += 1
                        at_once = True
                        if paused:
                            paused = False
                            log.info("feed notifications resumed")
                        # The writes meanwhile: one NOTIFY, later the more there were.
                        time.sleep(min(self.max_interval, self.min_interval * max(covered, 1)))
            except psycopg.Error as exc:
                if not paused:  # said once, not at every attempt
                    reason = redacted_reason(exc, connected=up)
                    log.warning("feed notifications paused until it reconnects: %s", reason)
                    paused = True
                self._pending.set()  # not sent: send once connected again
                pause = self.refused.wait(exc, wait)
            if up and at_once:
                at_once = False
                continue
            self._stop.wait(wait if pause is None else pause)
            wait = min(wait * 2, longest)


@dataclass(frozen=True)
class Kept:
    page: Page
    etag: str
    generation: int
    written: bytes  # the shared last write's bytes before the page's read (last_write.py)
    fresh_until: float  # time.monotonic() seconds: the copy's age bound
    expires_at: float  # time.time() seconds: its first crud's expiry (inf: none)


class FirstPages:
    """The home feed's first page for each `limit`, kept while it is fresh."""

    def __init__(
        self,
        changes: FeedChanges,
        *,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
        ticks: Callable[[], float] = time.monotonic,
        last_write: LastWrite | None = None,
    ) -> None:
        self.changes = changes
        # The other workers' writes, seen as soon as they are made (read here directly:
        # a method call would cost the first page's every request more).
        self._written = NO_WRITES if last_write is None else last_write.memory
        self.max_age = max_age
        # The age bound by a clock no one sets (a wall clock stepped back an hour kept a
        # copy an hour); expiry by the wall clock, as the database's expires_at is.
        self._clock = clock
        self._ticks = ticks
        self._kept: dict[int, Kept] = {}
        self._build_locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()
        self.builds = 0  # how many times a page was read from the database

    def _fresh(self, kept: Kept | None) -> bool:
        return (
            kept is not None
            and kept.generation == self.changes.generation
            and kept.written == self._written[:SIZE]
            and self._ticks() < kept.fresh_until
            and self._clock() < kept.expires_at
        )

    def get(self, limit: int, build: Callable[[], tuple[Page, datetime | None]]) -> Kept:
        """The kept first page of `limit` cruds, or a new one from build().

        build() returns the page and the earliest expiry on it (None: nothing on it).
        """
        kept = self._kept.get(limit)
        if not self.changes.listening:
            return self._build(build, self.changes.generation)  # not kept: nothing is
        if self._fresh(kept):
            return kept  # type: ignore[return-value]
        with self._lock:
            build_lock = self._build_locks.setdefault(limit, threading.Lock())
        # One rebuild at a time; the others then take its result. Waited for a moment
        # only: a rebuild stuck on a database gone silent held every later first page
        # of this worker behind it, unbounded, until they held all its threads (health
        # too); past the moment, a request reads for itself, on the read path's own
        # checks (a database known to be down: its 503 at once). A first page that takes
        # longer than the moment to read, each waiting request reads too: more reads of
        # one cheap query, through the pool's own bound, while the database is slow.
        if not build_lock.acquire(timeout=BUILD_WAIT_SECONDS):
            return self._build(build, self.changes.generation)  # not kept: the other is
        try:
            kept = self._kept.get(limit)
            if self._fresh(kept):
                return kept  # type: ignore[return-value]
            # Read before the query: a change committed meanwhile makes the copy stale.
            kept = self._build(build, self.changes.generation)
            self._kept[limit] = kept
            return kept
        finally:
            build_lock.release()

    def _build(self, build: Callable[[], tuple[Page, datetime | None]], generation: int) -> Kept:
        started = self._ticks()
        written = self._written[:SIZE]  # before the read, as the generation
        page, first_expiry = build()
        self.builds += 1
        expires_at = math.inf if first_expiry is None else first_expiry.timestamp()
        return Kept(page, etag_of(page), generation, written, started + self.max_age, expires_at)

    def clear(self) -> None:
        self._kept.clear()
