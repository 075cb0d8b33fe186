"""One migrator at a time: a session-level advisory lock on a direct connection.

A session lock outlives the transactions inside it, so it covers `transaction:false`
migrations too, and the server frees it when the connection ends, even after kill -9.
Through a pooler in transaction mode (PgBouncer) a session lock would be lost between
statements, and RDS Proxy pins the session: take a direct URL (MIGRATION_CONNECTION_URL).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

from cruddur.db import template
from cruddur.errors import Problem

# b"cruddur\x01": one key for every Cruddur database (advisory locks are per database).
LOCK_KEY = int.from_bytes(b"cruddur\x01", "big")


@dataclass(frozen=True)
class LockHolder:
    pid: int
    application_name: str | None
    client_addr: str | None
    backend_start: datetime | None
    state: str | None
    query_start: datetime | None

    def describe(self) -> str:
        where = f" from {self.client_addr}" if self.client_addr else ""
        since = ""
        if self.backend_start:
            since = f", connected since {self.backend_start:%Y-%m-%d %H:%M:%S %Z}"
        return f"pid {self.pid} ({self.application_name or 'no application name'}{where}{since})"


class LockTimeout(Problem):
    """Another session held the migration lock for longer than we would wait."""

    def __init__(self, holder: LockHolder | None, waited: float) -> None:
        self.holder = holder
        who = holder.describe() if holder else "a session that has since let go"
        super().__init__(f"another migration holds the lock: {who}; gave up after {waited:g} s")


class NotHeld(Problem):
    """The session that took the lock is not the one answering: a transaction pooler."""

    def __init__(self) -> None:
        super().__init__(
            "the migration lock is not held by this session: a transaction pooler "
            "(PgBouncer, RDS Proxy) seems to be in front, handing statements to other server "
            "sessions; set MIGRATION_CONNECTION_URL to the database's direct URL"
        )


KEY_PARTS = {"high": LOCK_KEY >> 32, "low": LOCK_KEY & 0xFFFFFFFF}  # as pg_locks shows it
# Unlocks tried when the lock is found elsewhere: through a pooler each may reach the
# server session that took it, which would otherwise keep it (and block every migrate).
STRAY_UNLOCKS = 8


def holder(conn: psycopg.Connection) -> LockHolder | None:
    cur = conn.cursor(row_factory=class_row(LockHolder))
    return cur.execute(template("migrations", "lock_holder"), KEY_PARTS).fetchone()


def ensure_held(conn: psycopg.Connection) -> None:
    """NotHeld unless this session (pg_backend_pid()) holds the lock: through an
    undetected transaction pooler it stays on whichever server session took it."""
    if not conn.execute(template("migrations", "lock_held"), KEY_PARTS).fetchone()[0]:
        release_stray(conn)
        raise NotHeld()


def acquire(
    conn: psycopg.Connection,
    wait: float,
    on_wait: Callable[[LockHolder | None, float], None] | None = None,
) -> None:
    """Take the lock, trying every POLL_SECONDS for up to `wait` seconds.

    Tried, not waited for in the server: a `pg_advisory_lock` that waits is a statement
    with a snapshot for as long as it waits, and the holder's `CREATE INDEX
    CONCURRENTLY` waits for every older snapshot to end. The two waited for each other
    until the server's deadlock check cancelled one, the index build perhaps, leaving
    an INVALID index. A try is a statement of a moment. (Waiters no longer take the
    lock in the order they came; each finds the other's work done either way.)"""
    if _try(conn):
        return
    current = holder(conn)
    if wait <= 0:
        raise LockTimeout(current, 0)
    if on_wait is not None:
        on_wait(current, wait)
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(POLL_SECONDS, left))
        if _try(conn):
            return
    raise LockTimeout(holder(conn) or current, wait)


POLL_SECONDS = 0.1  # between tries while another migration holds the lock


def _try(conn: psycopg.Connection) -> bool:
    """Whether the lock was taken; NotHeld when this session held it already (a pooled
    one, which has let it go now: migrations/lock_try.sql)."""
    (outcome,) = conn.execute(
        template("migrations", "lock_try"), {**KEY_PARTS, "key": LOCK_KEY}
    ).fetchone()
    if outcome == "stray":
        raise NotHeld()
    return outcome == "taken"


def release(conn: psycopg.Connection) -> None:
    """Let go; NotHeld when this session did not hold it (a pooler is in front)."""
    if not conn.closed and not conn.broken and not _unlock(conn):
        release_stray(conn)
        raise NotHeld()


def release_stray(conn: psycopg.Connection) -> None:
    if conn.closed or conn.broken:
        return
    for _ in range(STRAY_UNLOCKS):
        if _unlock(conn):
            return


def _unlock(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY]).fetchone()[0])
