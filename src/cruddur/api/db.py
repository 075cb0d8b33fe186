"""The API's own path to its database, as flaskr's db.py: `get_db()` in a view gives the
primary's pool, made from the URL the app was given and opened on first use.

`cruddur serve` works out where the API connects (the embedded server's API role, or
CRUDDUR_API_CONNECTION_URL, or CONNECTION_URL) once, and hands that URL to the workers'
factory; the app itself never looks for a target, starts a server or asks whether it is
production. Without `cruddur serve` (tests, a server started by hand) the URL comes from
the same settings: CRUDDUR_API_CONNECTION_URL, else CONNECTION_URL.

A forking server imports the app in the parent or the worker; opening lazily means each
worker opens its own pool after the fork, and a database that is down at start-up costs
503s until it is back, not a crashed worker. The primary's Db is made with `fail_fast`:
after a failed attempt to open, requests get their 503 at once until its probe connects,
and the next request opens the pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import psycopg
from flask import current_app
from psycopg_pool import PoolTimeout

from cruddur.api_urls import ApiUrls as ApiUrls
from cruddur.api_urls import api_conninfo as api_conninfo
from cruddur.config import Settings
from cruddur.db import Db
from cruddur.db.reachability import DatabaseUnavailable

PRIMARY_KEY = "cruddur.db"  # app.extensions: the primary's AppDatabase

# Opening takes one connection, bounded by CRUDDUR_CONNECT_TIMEOUT; requests that come
# meanwhile wait this long for it, then get their 503.
OPEN_WAIT = 2.0  # seconds

# A replica that gives no connection within this is skipped for the primary, not waited on.
READER_WAIT_SECONDS = 1.0
# A read the replica has not answered within this is cut and made on the primary (a
# replica that is up but does not answer held reads for ever: cruddur/deadlines.py). A page
# takes milliseconds; this is far above that and under a client's patience.
READ_DEADLINE_SECONDS = 2.0


def get_db() -> Db:
    """The primary's pool, in a request: writes, and the reads a write needs."""
    return current_app.extensions[PRIMARY_KEY].get()


def primary_db(settings: Settings, url: str | None = None) -> Db:
    """The pool over the API's own URL (`url`, else the settings'), sized from the settings.

    Not opened yet: a forking server opens it in each worker, after the fork. Every API
    query is one statement, so autocommit keeps it atomic and saves the BEGIN and COMMIT
    round trips; reads find a dead connection themselves and retry (Db._read) instead of
    paying a check round trip on every checkout (README, "Measured").
    """
    url = url or ApiUrls.from_settings(settings).primary
    pooled = settings.replica.behind_pooler(url)
    # fail_fast: while the server is down, requests get their 503 at once (README, "Outages").
    return Db(
        api_conninfo(url, pooled, settings.api_timeouts), settings.pool,
        application_name="cruddur-api",
        autocommit=True, check=False, behind_pooler=pooled, fail_fast=True,
    )  # fmt: skip


def reader_db(settings: Settings, url: str) -> Db:
    """The pool over the replica (READER_CONNECTION_URL); its callers wait at most
    READER_WAIT_SECONDS for a connection."""
    pool = replace(settings.pool, timeout=min(settings.pool.timeout, READER_WAIT_SECONDS))
    pooled = settings.replica.behind_pooler(url)
    return Db(
        api_conninfo(url, pooled, settings.api_timeouts), pool,
        application_name="cruddur-api-reader",
        autocommit=True, check=False, behind_pooler=pooled, deadline=READ_DEADLINE_SECONDS,
    )  # fmt: skip


class AppDatabase:
    """One pool, made and opened on first use, once per process."""

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

    def pool_stats(self) -> dict[str, int] | None:
        """The pool's figures (psycopg_pool's get_stats), None before it is opened."""
        opened = self._opened
        return opened.pool.get_stats() if opened is not None else None

    @property
    def conninfo(self) -> str:
        """Where it connects, without opening it."""
        return (self._db or self._make()).conninfo

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db = self._opened = None
