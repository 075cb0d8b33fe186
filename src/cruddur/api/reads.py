"""Where a read goes: the replica (READER_CONNECTION_URL) when it is fresh enough, else
the primary. Writes always go to the primary.

Read-your-writes: a write's response carries the primary's WAL position after its commit
(`X-Read-After`). A read that sends it back goes to the replica only if the replica has
replayed that far, so the writer sees its own write. Without the header a read may be
behind by at most the allowed lag (CRUDDUR_REPLICA_MAX_LAG).

Each worker looks at its replica from a thread of its own, once a second (never once a
request): its lag, its replayed position, whether it answers. A replica that is too far
behind or does not answer is skipped until a look finds it well again; a read that fails
on the replica is served by the primary at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import psycopg

from cruddur import connecting
from cruddur.api.db import AppDatabase
from cruddur.api.read_after import ReadAfterSigner, new_key
from cruddur.config import ReplicaSettings
from cruddur.db import Db, template
from cruddur.db.errors import problem_line
from cruddur.db.replication import (
    NOT_LOOKED_AT,
    LagClock,
    PrimarySample,
    ReplicaState,
    compared_with,
    format_lsn,
    lag_words,
    look_at_replica,
    not_following,
    primary_sample,
)
from cruddur.deadlines import within

log = logging.getLogger("cruddur.api.reads")

T = TypeVar("T")

READ_AFTER_HEADER = "X-Read-After"
# The watcher's wait for the primary's write position (a connection, then the answer):
# milliseconds when it is well; past this it is skipped for that look.
PRIMARY_SAMPLE_SECONDS = 1.0
# The same for the look at the replica, on the watcher's own connection.
REPLICA_LOOK_SECONDS = 1.0
LAG_UNKNOWN = (
    "behind the primary since before this worker first looked, and it has replayed no "
    "transaction since it started: how far behind is not known yet"
)


def _why_skipped(state: ReplicaState) -> str:
    """The kind of reason a replica is not used, to report each new one once."""
    if state is NOT_LOOKED_AT:
        return "not looked at"
    if not state.reachable:
        return "unreachable"
    if state.following is False:
        return "not following"
    return "behind" if state.in_recovery else "not a replica"


class ReadRouter:
    """The primary and, when configured, a replica; `for_read` picks one per request."""

    def __init__(
        self,
        primary: AppDatabase,
        reader: AppDatabase | None,  # None: no READER_CONNECTION_URL, all on the primary
        replica: ReplicaSettings,
        connect_timeout: int,  # the watcher's, in seconds
        read_after_seconds: float,  # how long a write's X-Read-After counts (web page's)
    ) -> None:
        self.primary, self.reader = primary, reader
        # Without a key of the settings' (one process: a test's app), one of its own.
        self.signer = ReadAfterSigner(replica.read_after_key or new_key(), read_after_seconds)
        self.max_lag = replica.max_lag
        self.check_interval = replica.check_interval
        self._connect_timeout = connect_timeout
        self._state = NOT_LOOKED_AT
        self._clock = LagClock()
        self._watcher: threading.Thread | None = None
        self._watcher_lock = threading.Lock()
        self._stopped = threading.Event()

    # -- the watcher: one thread per worker process, started on first use -------------

    def _ensure_watching(self) -> None:
        if self._watcher is not None or self.reader is None:
            return
        with self._watcher_lock:
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, name="cruddur-replica-watch", daemon=True
                )
                self._watcher.start()

    def _watch(self) -> None:
        assert self.reader is not None
        conn: psycopg.Connection | None = None
        while not self._stopped.is_set():
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = connecting.connect(
                        self.reader.conninfo,  # a session of its own, beside the pool
                        autocommit=True,
                        connect_timeout=self._connect_timeout,
                        application_name="cruddur-replica-watch",
                        prepare_threshold=None,  # safe behind a transaction pooler too
                    )
                state = self._look(conn)
            except psycopg.Error as exc:
                state = ReplicaState(False, problem=problem_line(exc))
                if conn is not None:
                    conn.close()
                    conn = None
            self._set_state(state)
            self._stopped.wait(self.check_interval)
        if conn is not None:
            conn.close()

    def _look(self, conn: psycopg.Connection) -> ReplicaState:
        """One look at the replica over the watcher's `conn`, with its lag by the clock."""
        primary = self._sample_primary()
        # Bounded: a replica that stopped answering (its processes stopped, the kernel
        # still acknowledging) held the look for ever, and health kept showing its last
        # look, reachable and 0 s behind, with nothing logged.
        state = within(look_at_replica, REPLICA_LOOK_SECONDS)(conn)
        if not state.in_recovery:
            return state
        if primary is not None:
            if not_following(state, primary) is not None:
                # Sampled before the look: a replica that follows may have replayed past
                # it since. Only a sample taken after the look can tell; without one (the
                # primary not answering now), this look tells nothing of the kind, and
                # the one before would call a replica replaying on "not following".
                primary = self._sample_primary()
            if primary is not None:
                state = compared_with(state, primary)
                if state.following is False:
                    return state
        if state.replayed is not None:
            lag = self._clock.lag(time.monotonic(), state.replayed, state.replay_age)
            if lag == math.inf:
                state = replace(state, lag_seconds=None, problem=LAG_UNKNOWN)
            elif lag is not None and primary is None and state.lag_seconds is None:
                # Without the primary, and WAL waits that it cannot date.
                state = replace(state, problem=state.problem or LAG_UNKNOWN)
            elif lag is not None:
                if primary is None:
                    # Without the primary the clock is blind to WAL written since its
                    # last sample: it said 0 while the replica held a committed write it
                    # had not replayed. The replica's own estimate stands.
                    lag = max(lag, state.lag_seconds or 0.0)
                state = replace(state, lag_seconds=lag, problem=None)
        return state

    def _sample_primary(self) -> PrimarySample | None:
        """The primary's write position now, also given to the lag clock; None without the
        primary (down, or not answering within the bound): then the replica's own estimate
        stands. Unbounded, a hung primary held the watcher: its look aged out and reads
        went to the primary."""
        try:
            primary = self.primary.get().bounded(PRIMARY_SAMPLE_SECONDS)
            row = primary.query_row(template("replication", "primary_state"))
        except psycopg.Error:  # PoolTimeout and DeadlinePassed too
            return None
        sample = primary_sample(row)
        if sample is None:
            return None
        # Back after samples failed, what it wrote meanwhile counts from the last sample
        # that worked (a write just before it went away): the clock counts from the last
        # time the primary was seen at or below the replica's position.
        self._clock.primary_at(time.monotonic(), sample.written)
        return sample

    def _set_state(self, state: ReplicaState) -> None:
        before = self._state
        was_fresh = before.fresh(self.max_lag)
        state = replace(state, checked_at=time.monotonic())
        self._state = state
        if state.fresh(self.max_lag):
            if not was_fresh:
                again = "" if before is NOT_LOOKED_AT else "back "  # never out of use yet
                log.info("replica %sin use: %s", again, self.describe(state))
        elif was_fresh or _why_skipped(before) != _why_skipped(state):
            # Also the first look, and a new reason: a replica misconfigured from the start
            # (the primary's URL, a wrong password) would otherwise never be reported.
            log.warning("replica skipped, reads go to the primary: %s", self.describe(state))

    def describe(self, state: ReplicaState) -> str:
        if not state.reachable:
            return f"unreachable ({state.problem})"
        if not state.in_recovery:
            return (
                "READER_CONNECTION_URL reaches a server that is not a replica (not in "
                "recovery): the primary's own URL, or a promoted replica? Point it at a replica"
            )
        if state.lag_seconds is None:
            return state.problem or "lag unknown"
        return lag_words(state.lag_seconds, self.max_lag)

    def close(self) -> None:
        self._stopped.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    # -- routing ---------------------------------------------------------------------

    @property
    def state(self) -> ReplicaState:
        self._ensure_watching()
        return self._state

    def for_read(self) -> Db:
        """The replica when it is fresh, else the primary."""
        if self.reader is None:
            return self.primary.get()
        if not self.state.fresh(self.max_lag, time.monotonic()):
            return self.primary.get()
        try:
            return self.reader.get()
        except psycopg.Error as exc:
            self.replica_failed(exc)
            return self.primary.get()

    def read(self, use_case: Callable[..., T], *args: Any, read_after: int | None = None) -> T:
        """use_case(db, *args) on the database `for_read` picks; on the primary again when
        the replica fails it (a read is safe to repeat). Given `read_after`, on the
        replica only if it has replayed that far.

        That is asked on the connection the read then uses, every time: behind a reader
        endpoint (Aurora's, a load balancer's) each connection may reach another replica,
        so neither the watcher's look nor another connection's answer vouches for it."""
        db = self.for_read()
        if self.reader is None or db is not self.reader.opened:
            return use_case(db, *args)
        try:
            if read_after is None:
                return use_case(db, *args)
            with db.pinned() as pinned:
                caught_up = pinned.query_value(
                    template("replication", "replayed_past"), {"lsn": format_lsn(read_after)}
                )
                if caught_up:
                    return use_case(pinned, *args)
        except psycopg.OperationalError as exc:  # PoolTimeout too
            self.replica_failed(exc)
        return use_case(self.primary.get(), *args)

    def replica_failed(self, exc: BaseException) -> None:
        """A read on the replica failed: skip it until the watcher finds it well."""
        self._set_state(ReplicaState(False, problem=problem_line(exc)))

    def write_position(self) -> str | None:
        """The primary's WAL position now, for X-Read-After; None without a replica (a
        round trip saved), or when the primary does not answer it: the write has
        committed, and an error now would have the client send it again."""
        if self.reader is None:
            return None
        try:
            position = self.primary.get().query_value(template("replication", "write_position"))
            return self.signer.sign(position)
        except psycopg.Error as exc:  # PoolTimeout too
            log.warning("a write's 201 goes without X-Read-After: %s", type(exc).__name__)
            return None
