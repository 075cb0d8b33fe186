"""One migrator at a time: a session-level advisory lock on a direct connection.

A session lock outlives the transactions inside it, so it covers `transaction:false`
migrations too, and the server frees it when the connection ends, even after kill -9.
Through a pooler in transaction mode (PgBouncer) a session lock would be lost between
statements, and RDS Proxy pins the session: take a direct URL (MIGRATION_CONNECTION_URL).
"""

from __future__ import annotations

import math
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


def holder(conn: psycopg.Connection) -> LockHolder | None:
    params = {"high": LOCK_KEY >> 32, "low": LOCK_KEY & 0xFFFFFFFF}
    cur = conn.cursor(row_factory=class_row(LockHolder))
    return cur.execute(template("migrations", "lock_holder"), params).fetchone()


def acquire(
    conn: psycopg.Connection,
    wait: float,
    on_wait: Callable[[LockHolder | None, float], None] | None = None,
) -> None:
    """Take the lock, waiting up to `wait` seconds (in the server's queue, in order)."""
    if conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()[0]:
        return
    current = holder(conn)
    if wait <= 0:
        raise LockTimeout(current, 0)
    if on_wait is not None:
        on_wait(current, wait)
    # At least 1 ms: a lock_timeout of 0 is no timeout at all. The wait is lock_timeout's
    # alone: a statement_timeout the database or role sets (an RDS parameter group's)
    # would end it sooner, as a "statement timeout" that names no holder.
    timeout_ms = max(1, math.ceil(wait * 1000))
    conn.execute(
        "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', '0', false)",
        [f"{timeout_ms}ms"],
    )
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
    except psycopg.errors.LockNotAvailable:
        raise LockTimeout(holder(conn) or current, wait) from None
    finally:
        if not conn.closed:
            conn.execute("RESET lock_timeout; RESET statement_timeout")


def release(conn: psycopg.Connection) -> None:
    if not conn.closed and not conn.broken:
        conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
