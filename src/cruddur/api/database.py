"""The app's pool: made from the settings, opened on first use in each process.

A forking server imports the app in the parent or the worker; opening lazily means each
worker opens its own pool after the fork, and a database that is down at start-up costs
503s until it is back, not a crashed worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cruddur.db import Db


class AppDatabase:
    def __init__(self, make: Callable[[], Db]) -> None:
        self._make = make
        self._db: Db | None = None
        self._lock = threading.Lock()

    def get(self) -> Db:
        db = self._db
        if db is not None:
            return db
        with self._lock:
            if self._db is None:
                self._db = self._make().open()  # raises while the database is down
            return self._db

    @property
    def opened(self) -> Db | None:
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
