"""A bound on how long a query may wait for its server, kept from the client's side.

The connections' TCP bounds (db/dead_peer.py) end a wait only when the network goes
silent. A server that still acknowledges but never answers (a replica whose processes
are stopped, a pooler queueing the query in front of one that is down) held a read for
as long as it liked: 120 s behind PgBouncer, for ever directly, and a few such reads
held every thread of a worker. A server-side statement_timeout cannot help: the server
is the part that does not run.

One thread per process watches the connections given a deadline; one still busy past
it has its socket shut down, which ends libpq's wait at once with an OperationalError
(and leaves the connection broken: the pool discards it). A shutdown happens under the
same lock as `unwatch`, so a connection handed back to the pool is never cut.

psycopg and the standard library only, outside cruddur.db (whose package loads the
pool): the sign-up Lambda bounds its insert with it too, and it goes into the zip.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")
TICK_SECONDS = 0.1  # how often the watcher looks: a deadline is kept to within this


class DeadlinePassed(psycopg.OperationalError):
    """The query's server did not answer within its deadline; its connection was cut."""


class Deadlines:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[float, Any]] = {}  # token → (deadline, connection)
        self._cut: set[int] = set()
        self._tokens = 0
        self._pid = 0  # the process the watcher's thread runs in (none survives a fork)

    def watch(self, conn: psycopg.Connection, seconds: float) -> int:
        """Watch `conn` for `seconds`; a token for `unwatch`."""
        with self._lock:
            if self._pid != os.getpid():
                self._start()
            self._tokens += 1
            self._watched[self._tokens] = (time.monotonic() + seconds, conn)
            return self._tokens

    def unwatch(self, token: int) -> bool:
        """Stop watching; whether the deadline passed and the connection was cut."""
        with self._lock:
            self._watched.pop(token, None)
            if token in self._cut:
                self._cut.discard(token)
                return True
            return False

    def _start(self) -> None:
        self._pid = os.getpid()
        self._watched.clear()
        self._cut.clear()
        threading.Thread(target=self._run, name="cruddur-deadlines", daemon=True).start()

    def _run(self) -> None:
        tick = threading.Event()  # never set: a wait of TICK_SECONDS, whoever patches sleep
        while True:
            tick.wait(TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                late = [token for token, (due, _) in self._watched.items() if due <= now]
                for token in late:
                    _, conn = self._watched.pop(token)
                    _cut(conn)
                    self._cut.add(token)


def within(work: Callable[[Any], T], seconds: float) -> Callable[[Any], T]:
    """work(conn), its connection cut after `seconds`: DeadlinePassed then. Cut just
    after its answer came (the deadline passed as rows were read), the answer stands and
    the connection is closed: never pooled again."""

    def watched(conn: Any) -> T:
        token = DEADLINES.watch(conn, seconds)
        try:
            return work(conn)
        except psycopg.OperationalError as exc:
            if DEADLINES.unwatch(token):
                raise DeadlinePassed(f"no answer from the server within {seconds:g} s") from exc
            raise
        finally:
            if DEADLINES.unwatch(token):  # cut, though its work ended another way
                conn.close()

    return watched


def _cut(conn: psycopg.Connection) -> None:
    try:
        fd = conn.pgconn.socket
        # A duplicate of the descriptor: shutting the socket down ends the other side's
        # wait; closing the duplicate leaves libpq's own descriptor to libpq.
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):  # already closed, or never connected
        pass


DEADLINES = Deadlines()
