"""A replica's state, as the API's read routing and `cruddur db status` see it."""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, replace
from typing import NamedTuple

import psycopg

from cruddur.db.templates import template

_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_lsn(text: str) -> int | None:
    """A WAL position such as 0/16B3748 as a number; None when it is not one."""
    matched = _LSN.fullmatch(text.strip())
    if matched is None:
        return None
    return (int(matched[1], 16) << 32) + int(matched[2], 16)


@dataclass(frozen=True)
class ReplicaState:
    reachable: bool
    lag_seconds: float | None = None  # None: not known (unreachable, or not a replica)
    replayed: int | None = None  # the replayed WAL position, as parse_lsn gives it
    in_recovery: bool = False
    problem: str | None = None
    checked_at: float = 0.0  # time.monotonic() of the look
    # The age of the last transaction it replayed (None: none yet), whether or not WAL
    # waits: for a replica behind a primary it has lost touch with, how old its data is.
    replay_age: float | None = None
    received: int | None = None  # the WAL position received (streamed), as parse_lsn gives it
    cluster: str | None = None  # its database cluster's system identifier
    database: str | None = None  # the oid of the database the look connected to
    timeline: int | None = None  # its last restartpoint's timeline
    # Compared with a sample of the primary taken after the look: False when it holds WAL
    # the primary has not written, or is another cluster's; None when not compared.
    following: bool | None = None
    # lag_seconds is only a bound: one look, behind the primary, can say no more than the
    # age of its last replayed transaction (a worker's clock, looking every second, can).
    lag_at_most: bool = False

    def fresh(self, max_lag: float, now: float | None = None) -> bool:
        """Within max_lag at the look; given `now` (time.monotonic()), still within it
        now: the lag seen then plus the time since is how far behind it can be by now. A
        look that never comes back (a hung session, a connection lost without a reset)
        then stops vouching for the replica once that passes the limit."""
        if not self.reachable or self.lag_seconds is None:
            return False
        since = max(0.0, now - self.checked_at) if now is not None else 0.0
        return self.lag_seconds + since <= max_lag


def lag_words(lag: float, limit: float) -> str:
    """ "5.2 s behind (limit 5 s)", with the digits that tell it from the limit: 5.04 s
    read "5.0 s behind (limit 5 s)", as if within the limit it was past."""
    for digits in (1, 2, 3):
        shown = f"{lag:.{digits}f}"
        if (float(shown) > limit) == (lag > limit):
            return f"{shown} s behind (limit {limit:g} s)"
    return f"{lag:.3f} s behind, just past the {limit:g} s limit"


NOT_LOOKED_AT = ReplicaState(reachable=False, problem="not looked at yet")


def look_at_replica(conn: psycopg.Connection) -> ReplicaState:
    """One look at a replica over `conn` (any connection to it)."""
    row = conn.execute(template("replication", "replica_state")).fetchone()
    in_recovery, replayed, received, cluster, database, timeline, lag, replay_age = row
    if not in_recovery:
        # A primary (or a promoted replica) behind READER_CONNECTION_URL: it cannot say
        # how far it has replayed, so read-your-writes cannot be checked there.
        return ReplicaState(True, None, None, False, "not a replica (not in recovery)")
    return ReplicaState(
        True,
        None if lag is None else float(lag),
        parse_lsn(replayed) if replayed else None,
        True,
        # WAL waits and no transaction was replayed since it started (it said 0 s here).
        problem=WAITS_UNKNOWN if lag is None else None,
        replay_age=None if replay_age is None else max(0.0, float(replay_age)),
        received=parse_lsn(received) if received else None,
        cluster=cluster,
        database=database,
        timeline=timeline,
    )


@dataclass(frozen=True)
class PrimarySample:
    """The primary at one look: where its WAL is written up to, and which cluster it is."""

    written: int  # as parse_lsn gives it
    cluster: str | None
    database: str | None = None  # the oid of the API's database on it
    timeline: int | None = None  # the timeline it writes on


def primary_sample(row: tuple | None) -> PrimarySample | None:
    """primary_state.sql's row as a sample; None without a WAL position."""
    written, cluster, database, wal_file = row if row else (None, None, None, None)
    position = parse_lsn(written) if written else None
    if position is None:
        return None
    timeline = int(wal_file[:8], 16) if wal_file else None
    return PrimarySample(position, cluster, database, timeline)


def not_following(state: ReplicaState, primary: PrimarySample) -> str | None:
    """Why the replica is not following this primary; None when nothing says so.

    `primary` must be sampled after the look at the replica: a replica that follows may
    replay past a position sampled before it. A replica holding WAL past all the primary
    has written holds another history (the primary restored from a backup, its WAL
    position gone back): its own lag says 0 and its positions, compared with the
    primary's, said every write was replayed, so readers were served data the primary no
    longer has and writers missed their own writes."""
    if state.cluster and primary.cluster and state.cluster != primary.cluster:
        return (
            f"not following this primary: a replica of another database cluster (system "
            f"identifier {state.cluster}, the primary's {primary.cluster}); point "
            "READER_CONNECTION_URL at a replica of the primary"
        )
    if (
        state.cluster == primary.cluster
        and state.database
        and primary.database
        and state.database != primary.database
    ):
        # The same cluster, another of its databases: every read missed the writer's
        # own writes (or failed on a database without the schema), and health said ok.
        return (
            "not following this primary's database: READER_CONNECTION_URL names another "
            f"database on the replica (oid {state.database}, the API's {primary.database}); "
            "name the same database as CONNECTION_URL"
        )
    if state.timeline and primary.timeline and state.timeline > primary.timeline:
        # A replica of a server promoted away from this primary (a failover it was not
        # part of, or a copy of a promoted one): its WAL positions are another history's,
        # and one below the primary's passed for replayed, so writers missed their writes.
        return (
            f"not following this primary: it is on timeline {state.timeline}, past the "
            f"primary's {primary.timeline} (a replica of a server promoted away from it); "
            "point READER_CONNECTION_URL at a replica of the primary"
        )
    ahead = max((at for at in (state.replayed, state.received) if at is not None), default=0)
    if ahead > primary.written:
        return (
            f"not following this primary: it holds WAL up to {format_lsn(ahead)}, past all "
            f"the primary has written ({format_lsn(primary.written)}), a history the primary "
            "no longer has (restored from a backup?); rebuild the replica from the primary"
        )
    return None


def compared_with(state: ReplicaState, primary: PrimarySample) -> ReplicaState:
    """`state` with `following` set; one not following has no lag, so it is not used."""
    why = not_following(state, primary)
    if why is None:
        return replace(state, following=True)
    return replace(state, lag_seconds=None, problem=why, following=False)


WAITS_UNKNOWN = (
    "WAL waits to be replayed, and it has replayed no transaction since it started: how "
    "far behind is not known"
)


class _Sample(NamedTuple):
    first_seen: float  # time.monotonic() the primary was first seen at this position
    last_seen: float  # … and last seen there (an idle primary: the latest sample)
    position: int


class LagClock:
    """How long the oldest WAL a replica has not replayed has existed on the primary.

    The primary's write position is sampled once a look; a replica that has replayed up
    to R is behind by the time since the primary was last seen at or below R (0 when no
    sample is past R): the WAL past R was written after that sample, at most this long
    ago. An upper bound, by up to one look; counting from the first sample past R, as
    before, under-reported by as much, and a replica past the limit served reads. Unlike
    the age of the last replayed transaction, this is right for an idle primary (nothing
    to replay is no lag) and for a replica cut off from it (nothing arrives, the primary
    goes on: lag grows)."""

    def __init__(self, max_samples: int = 1024) -> None:
        self.max_samples = max_samples
        self._samples: deque[_Sample] = deque()  # by position, ascending

    def primary_at(self, when: float, position: int) -> None:
        samples = self._samples
        if samples and position < samples[-1].position:
            # The primary went back (restored from a backup): the samples are of a history
            # it no longer has. Kept, its new positions were dropped as old, and a replica
            # rebuilt from it read as behind (or not known) until the worker restarted.
            samples.clear()
        if samples and position == samples[-1].position:
            # Nothing new written since the last sample: still there now.
            samples[-1] = samples[-1]._replace(last_seen=when)
            return
        samples.append(_Sample(when, when, position))
        if len(samples) > self.max_samples:
            # A replica stuck this long: halve the samples, keeping the oldest, which is
            # its lag. (Dropping the oldest by age, as before, capped a stuck replica's lag
            # at the age kept, 600 s: a limit above that read it as fresh for ever.)
            kept = list(samples)
            self._samples = deque([kept[0], *kept[2::2]])

    def lag(self, now: float, replayed: int, estimate: float | None = None) -> float | None:
        """Seconds behind; None before any sample of the primary. Samples before the last
        one the replica has passed are dropped here: its lag counts from that one.

        A replica that has not replayed even the first sample (a worker just started,
        the replica already behind, replaying slowly or cut off from the primary) has
        been behind since before the clock began: the clock knows only a lower bound, so
        the replica's own `estimate` (the age of its last replayed transaction) counts
        when it is larger, and without one (none replayed since it started) the lag is
        not known: math.inf. Without this, a replica hours behind read as fresh for the
        first max_lag seconds of every worker."""
        samples = self._samples
        if not samples:
            return None
        while len(samples) > 1 and samples[1].position <= replayed:
            samples.popleft()
        head = samples[0]
        if head.position > replayed:
            behind = max(0.0, now - head.first_seen)
            return math.inf if estimate is None else max(behind, estimate)
        if len(samples) == 1:
            return 0.0  # all the primary had written at the last sample is replayed
        return max(0.0, now - head.last_seen)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
