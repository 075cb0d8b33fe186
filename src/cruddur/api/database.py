"""The app's pool: made from the settings, opened on first use in each process.

A forking server imports the app in the parent or the worker; opening lazily means each
worker opens its own pool after the fork, and a database that is down at start-up costs
503s until it is back, not a crashed worker.

A Db made with `fail_fast` (the API's, `targets.app_db`) keeps track of whether the
server answers: after a failed attempt to open, requests get their 503 at once until
its probe connects, and the next request opens the pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
from psycopg_pool import PoolTimeout

from cruddur.db import Db
from cruddur.db.reachability import DatabaseUnavailable

# Opening takes one connection, bounded by CRUDDUR_CONNECT_TIMEOUT; requests that come
# meanwhile wait this long for it, then get their 503.
OPEN_WAIT = 2.0  # seconds


class AppDatabase:
    def __init__(self, make: Callable[[], Db]) -> None:
        self._make = make
        self._db: Db | None = None
        self._opened: Db | None = None
        self._lock = threading.Lock()

    def get(self) -> Db:
        opened = self._opened
        if opened is not None:
            return opened
        if not self._lock.acquire(timeout=OPEN_WAIT):
            raise DatabaseUnavailable("the database connection is still being opened")
        try:
            if self._opened is not None:
                return self._opened
            if self._db is None:
                self._db = self._make()
            db = self._db
            gate = db.reachability
            if gate is not None:
                gate.admit()  # the last attempt failed and no probe has connected since
            try:
                self._opened = db.open()
            except (psycopg.OperationalError, PoolTimeout):
                if gate is not None:
                    gate.mark_down()
                raise
            return self._opened
        finally:
            self._lock.release()

    @property
    def opened(self) -> Db | None:
        return self._opened

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db = self._opened = None
