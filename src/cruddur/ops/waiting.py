"""Wait until the database accepts connections (dbmate's `wait`), for scripts and
one-off jobs that start beside the server: compose's migration job, a deploy step."""

from __future__ import annotations

import math
import time

import psycopg

from cruddur import connecting
from cruddur.db.dead_peer import with_cli_bounds
from cruddur.db.errors import explain

# libpq's words while a server starts, restarts or shuts down: worth waiting through.
_TRANSIENT = ("starting up", "shutting down", "in recovery mode", "not yet accepting connections")


def _transient(exc: psycopg.OperationalError) -> bool:
    if any(marker in str(exc).lower() for marker in _TRANSIENT):
        return True
    explained = explain(exc)
    return explained is not None and explained.kind == "unreachable"


def wait_until_accepting(
    url: str,
    timeout: float,
    connect_timeout: int = 2,
) -> float:
    """Seconds it took until `url` accepted a connection; raises the last error once
    `timeout` seconds pass, and at once for errors waiting cannot fix (a wrong
    password, a missing database)."""
    started = time.monotonic()
    while True:
        # Each try within what is left of `timeout`: a whole connect_timeout past it (15
        # s for --timeout 2) was waited. libpq takes no less than 2 s.
        left = math.ceil(timeout - (time.monotonic() - started))
        try:
            bound = max(2, min(connect_timeout, left))
            with connecting.connect(with_cli_bounds(url), connect_timeout=bound) as conn:
                conn.execute("SELECT 1")
            return time.monotonic() - started
        except psycopg.OperationalError as exc:
            if not _transient(exc) or time.monotonic() - started >= timeout:
                raise
        time.sleep(0.5)
