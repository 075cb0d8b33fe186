"""The app's pool: made from the settings, opened on first use in each process.

A forking server imports the app in the parent or the worker; opening lazily means each
worker opens its own pool after the fork, and a database that is down at start-up costs
503s until it is back, not a crashed worker.

While the database is down, an attempt to open can take the whole connect timeout. So
after a failed attempt, requests for the next `retry_after` seconds get their 503 at
once instead of queueing, one connect timeout after another, behind the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from cruddur.db import Db

RETRY_OPEN_AFTER = 2.0  # seconds


class DatabaseNotOpen(psycopg.OperationalError):
    """The last attempt to open the pool failed moments ago; not tried again yet."""


class AppDatabase:
    def __init__(self, make: Callable[[], Db], *, retry_after: float = RETRY_OPEN_AFTER) -> None:
        self._make = make
        self.retry_after = retry_after
        self._db: Db | None = None
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def get(self) -> Db:
        db = self._db
        if db is not None:
            return db
        with self._lock:
            if self._db is not None:
                return self._db
            if self._failed_at is not None:
                since = time.monotonic() - self._failed_at
                if since < self.retry_after:
                    raise DatabaseNotOpen(
                        f"the database did not answer {since:.1f} s ago; trying again shortly"
                    )
            try:
                self._db = self._make().open()
            except Exception:
                self._failed_at = time.monotonic()
                raise
            self._failed_at = None
            return self._db

    @property
    def opened(self) -> Db | None:
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
