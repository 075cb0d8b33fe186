"""A replica's state, as the API's read routing and `cruddur db status` see it."""

from __future__ import annotations

import re
from dataclasses import dataclass

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

    def fresh(self, max_lag: float) -> bool:
        return self.reachable and self.lag_seconds is not None and self.lag_seconds <= max_lag


NOT_LOOKED_AT = ReplicaState(reachable=False, problem="not looked at yet")


def look_at_replica(conn: psycopg.Connection) -> ReplicaState:
    """One look at a replica over `conn` (any connection to it)."""
    in_recovery, replayed, lag = conn.execute(template("replication", "replica_state")).fetchone()
    if not in_recovery:
        # A primary (or a promoted replica) behind READER_CONNECTION_URL: it cannot say
        # how far it has replayed, so read-your-writes cannot be checked there.
        return ReplicaState(True, None, None, False, "not a replica (not in recovery)")
    return ReplicaState(True, float(lag), parse_lsn(replayed) if replayed else None, True)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
