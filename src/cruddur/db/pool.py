"""`Db`: one connection pool per process and the query helpers everything else uses.

Values always travel as bound parameters. The JSON helpers let PostgreSQL build the
JSON and hand it back as text, so callers can send it on without decoding it.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Self, TypeVar

import psycopg
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format
from psycopg.rows import RowFactory, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from cruddur.config import PoolSettings
from cruddur.connecting import connect, let_go
from cruddur.db.reachability import ConnectionsRefused, Reachability
from cruddur.db.read_only import ReadOnlyLook
from cruddur.deadlines import DeadlinePassed, within

# With a Reachability (fail_fast=True): psycopg_pool's own reconnection gives up almost at
# once, since its backoff grows with the outage and would hold up recovery; the probe
# decides when to connect again. A caller waiting for a connection looks at the
# Reachability this often, so an outage found meanwhile ends its wait.
POOL_RECONNECT_TIMEOUT = 0.1  # seconds
WAIT_SLICE = 0.2  # seconds
PROBE_AFTER_WAITING = 1.0  # seconds a checkout waits before asking whether the server is there
PROBE_CONNECT_TIMEOUT = 2  # seconds; libpq's smallest

Params = Sequence[Any] | dict[str, Any] | None
Row = TypeVar("Row")


def check_connection(conn: psycopg.Connection) -> None:
    """psycopg_pool's check (an empty query in autocommit) on a plain cursor: through
    the connection's own, which the psycopg instrumentation makes, every checkout was a
    span of its own, named after the database, with an empty statement."""
    autocommit = conn.autocommit
    if not autocommit:
        conn.autocommit = True
    try:
        with psycopg.Cursor(conn) as cursor:
            cursor.execute("")
    finally:
        if not autocommit:
            with contextlib.suppress(Exception):  # a closed connection's error is the one
                conn.autocommit = False


class InvalidText(psycopg.DataError):
    """A text value PostgreSQL cannot store: not UTF-8 (a lone surrogate), or a NUL byte."""

    sqlstate = "22021"  # character_not_in_repertoire, what the server says for these


def _as_subquery(sql: str) -> str:
    # Templates may end in ";" (psql style); inside a subquery that is a syntax error.
    return sql.strip().rstrip(";").rstrip()


# The wrapped text is a trusted template from our .sql files; values stay bound parameters.
def wrap_array(sql: str) -> str:
    inner = _as_subquery(sql)
    return f"SELECT COALESCE(json_agg(r), '[]'::json)::text FROM ({inner}) r"  # noqa: S608


def wrap_object(sql: str) -> str:
    inner = _as_subquery(sql)
    return f"SELECT row_to_json(r)::text FROM ({inner}) r"  # noqa: S608


class RawText(Loader):
    """Text in a binary result, as the UTF-8 bytes PostgreSQL sent.

    A JSON body built by PostgreSQL goes out as bytes: decoding it to str only to encode
    it again for the response (and for its ETag) cost more than the rest of its handling
    in psycopg. Only results asked for in binary (`binary=True`) use it.
    """

    format = Format.BINARY

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


class PooledConnection(psycopg.Connection):
    """A connection that keeps one cursor for the query helpers.

    A new cursor copies the connection's adapters map and builds a transformer (README,
    "Measured": the reused cursor's line). The pool hands a connection to one thread at
    a time, so one cursor per connection is never shared.
    """

    _helper_cursor: psycopg.Cursor | None = None
    _plain_cursor: psycopg.Cursor | None = None  # see `unsampled`
    _poller: select.poll | None = None  # made on first use: the socket is the connection's
    # In a server worker while tracing is on (tracing.start sets it): whether this
    # thread's request was left unsampled. Its statements then take a plain cursor, not
    # the psycopg instrumentation's (whose wrapper and check cost each statement ~60
    # Python bytecodes to make no span).
    unsampled: Callable[[], bool] | None = None

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        """The pool's own connects (cruddur.connecting): a failed one holds no socket."""
        try:
            return super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            let_go(exc)
            raise

    def helper_cursor(self, row_factory: RowFactory[Any] = tuple_row) -> psycopg.Cursor:
        """The kept cursor, making rows with `row_factory` (named rows: class_row, …).

        Switching factories is an attribute set, not a new cursor; the default (tuples)
        costs nothing while it stays the default.
        """
        unsampled = self.unsampled
        if unsampled is not None and unsampled():
            cur = self._plain_cursor
            if cur is None or cur.closed:
                cur = self._plain_cursor = self._new_helper(psycopg.Cursor)
        else:
            cur = self._helper_cursor
            if cur is None or cur.closed:
                cur = self._helper_cursor = self._new_helper(self.cursor_factory)
        if cur.row_factory is not row_factory:
            cur.row_factory = row_factory
        return cur

    def _new_helper(self, factory: Callable[..., psycopg.Cursor]) -> psycopg.Cursor:
        cur = factory(self)
        cur.adapters.register_loader("text", RawText)
        return cur

    def dropped_by_server(self) -> bool:
        """An idle connection the server has closed (a restart, a crash, a terminated
        backend) has something to read: its end, or the FATAL message before it. One
        poll(2) that does not wait (about 2 µs), where a check would be a round trip."""
        if self.closed:
            return True
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self.pgconn.socket, select.POLLIN)
        return bool(poller.poll(0))


class _Pool(ConnectionPool):
    """psycopg_pool's pool, its own checks (`check()`, the reconnect path's) on a plain
    cursor too, as the checkout's are: no empty-statement span for each."""

    check_connection = staticmethod(check_connection)


class _GatedPool(_Pool):
    """psycopg_pool's pool, with a Reachability that says when not to try to connect.

    While the server refuses new connections (no slot left, credentials refused) the
    pool's growth retried with no pause: each getconn, and each check() after a probe,
    started another attempt. Within REFUSED_RETRY of a refusal it neither grows nor
    connects; its refusals are counted and logged by the Reachability instead.
    """

    gate: Reachability

    def _maybe_grow_pool(self) -> None:
        if not self.gate.holding_off():
            super()._maybe_grow_pool()

    def _connect(self, timeout: float | None = None) -> PooledConnection:
        gate = self.gate
        if gate.holding_off():
            raise gate.refusal_error()  # nothing sent: the server said no a moment ago
        try:
            conn = super()._connect(timeout)
        except psycopg.Error as exc:
            if gate.refused(exc):
                exc.counted = True  # type: ignore[attr-defined]  # for _RefusalsCounted
            raise
        gate.connected()
        return conn


class _RefusalsCounted(logging.Filter):
    """Drops psycopg_pool's warnings for an attempt a Reachability refused or counted
    (its "error connecting", and the "reconnection attempt failed" the same thread logs
    next): the Reachability logs them once per interval, with a count, instead."""

    def __init__(self) -> None:
        super().__init__()
        self._last = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "error connecting in %r: %s" and isinstance(record.args, tuple):
            exc = record.args[-1]
            dropped = isinstance(exc, ConnectionsRefused) or getattr(exc, "counted", False)
            self._last.dropped = dropped
            return not dropped
        if str(record.msg).startswith("reconnection attempt in pool"):
            dropped, self._last.dropped = getattr(self._last, "dropped", False), False
            return not dropped
        return True


logging.getLogger("psycopg.pool").addFilter(_RefusalsCounted())


class Db:
    """A pool over one database. Open it explicitly (after a fork, in a server)."""

    def __init__(
        self,
        conninfo: str,
        pool: PoolSettings | None = None,
        *,
        autocommit: bool = False,
        application_name: str = "cruddur",
        check: bool = True,
        behind_pooler: bool = False,
        fail_fast: bool = False,
        deadline: float | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.check = check
        # Seconds a query may wait for its server before its connection is cut (a read
        # that can go elsewhere: the replica's); None: as long as the server takes.
        self.deadline = deadline
        self.settings = pool or PoolSettings()
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": autocommit,
            "connect_timeout": self.settings.connect_timeout,
            "application_name": application_name,
        }
        self.behind_pooler = behind_pooler
        if behind_pooler:
            # A transaction pooler gives each transaction whichever server session is free:
            # a statement prepared on one is unknown on the next.
            self._connect_kwargs["prepare_threshold"] = None
        self._pool: ConnectionPool | None = None
        # fail_fast (the API): while the server is down, fail at once instead of waiting
        # the pool's timeout, and serve again as soon as a probe connects.
        self.reachability = (
            Reachability(
                self._probe,
                self._drop_dead_connections,
                holding=self._holding,
                patient_probe=self._patient_probe,
            )
            if fail_fast
            else None
        )
        # The pool's connections, to tell whether it holds one that may serve.
        self._made: weakref.WeakSet[PooledConnection] = weakref.WeakSet()
        self._made_lock = threading.Lock()
        # Sessions refusing writes after the database was made writable again (read_only.py).
        self._read_only = ReadOnlyLook(self._new_session_writable, self._renew_sessions)

    # -- lifecycle ---------------------------------------------------------------

    def open(self) -> Self:
        if self._pool is not None:
            return self
        # One direct connection first: the pool retries in the background and would
        # report only a timeout, hiding why (refused, bad password, no such database).
        gate = self.reachability
        try:
            connect(self.conninfo, **self._connect_kwargs).close()
        except psycopg.Error as exc:
            if gate is not None:
                gate.refused(exc)  # a refusal: logged as one, with the server's reason
            raise
        pool = (_Pool if gate is None else _GatedPool)(
            self.conninfo,
            min_size=self.settings.min_size,
            max_size=self.settings.max_size,
            timeout=self.settings.timeout,
            kwargs=self._connect_kwargs,
            connection_class=PooledConnection,
            # A round trip per checkout; without it, reads retry once instead (_read).
            check=check_connection if self.check else None,
            open=False,
            name="cruddur",
            **(
                {
                    "reconnect_timeout": POOL_RECONNECT_TIMEOUT,
                    "reconnect_failed": lambda _pool: gate.verify_soon(),
                    "configure": self._remember,
                }
                if gate is not None
                else {}
            ),
        )
        if isinstance(pool, _GatedPool):
            pool.gate = gate
        try:
            pool.open(wait=True, timeout=self.settings.timeout)
        except BaseException:
            pool.close()  # its worker threads too
            raise
        self._pool = pool
        atexit.register(self.close)
        return self

    def close(self) -> None:
        if self.reachability is not None:
            self.reachability.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
            atexit.unregister(self.close)

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            raise RuntimeError("Db is not open: call Db.open() first")
        return self._pool

    @contextmanager
    def connection(self) -> Iterator[PooledConnection]:
        """A pooled connection; its transaction commits on success, rolls back on error."""
        pool = self.pool
        conn = self._take(pool)
        try:
            if conn.autocommit:  # each statement commits itself: no transaction to end
                yield conn
            else:
                with conn:
                    yield conn
        except psycopg.OperationalError as exc:
            self._failed(conn, exc)
            raise
        except psycopg.errors.ReadOnlySqlTransaction:
            self._read_only.refused()  # before putconn: a stale session is not given back
            raise
        finally:
            pool.putconn(conn)

    def bounded(self, seconds: float) -> Db:
        """This Db, on the same pool, with a wait of at most `seconds` for a connection
        and each query cut after `seconds` (deadlines.py): for a look that must not
        hang on a server that stopped answering (the replica watcher's at the primary)."""
        view = copy.copy(self)
        view.deadline = seconds
        view.settings = replace(self.settings, timeout=seconds)
        return view

    @contextmanager
    def pinned(self) -> Iterator[Db]:
        """This Db with every query helper on one connection of its pool, for the block:
        what the caller checks on that connection (how far a replica has replayed)
        holds for the queries it makes next. Two checkouts may reach two servers (a
        reader endpoint balances connections across replicas). Behind a transaction
        pooler (PgBouncer over several replicas, RDS Proxy's read-only endpoint) so may
        two transactions of one connection: there the block is one transaction."""
        pool = self.pool
        conn = self._take(pool)
        try:
            if self.behind_pooler and conn.autocommit:
                # Its BEGIN and COMMIT under the queries' deadline too: a replica that
                # stopped answering behind PgBouncer held them (and the read) for 60 s
                # and more, where a query is cut at its deadline and read from the primary.
                transaction = conn.transaction()
                self._bounded(conn, transaction.__enter__)
                try:
                    yield _Pinned(self, conn)
                except BaseException as exc:
                    failed = (type(exc), exc, exc.__traceback__)
                    with contextlib.suppress(psycopg.Error):  # the block's error stands
                        self._bounded(conn, lambda: transaction.__exit__(*failed))
                    raise
                self._bounded(conn, lambda: transaction.__exit__(None, None, None))
            else:
                yield _Pinned(self, conn)
        finally:
            pool.putconn(conn)

    def _bounded(self, conn: PooledConnection, step: Callable[[], Any]) -> Any:
        """step() on `conn`, cut at this Db's deadline (when it has one), as a query is."""
        if self.deadline is None:
            return step()
        try:
            return within(lambda _: step(), self.deadline)(conn)
        except psycopg.OperationalError as exc:
            self._failed(conn, exc)
            raise

    def _take(self, pool: ConnectionPool) -> PooledConnection:
        """A connection from the pool; with a Reachability (the API), DatabaseUnavailable
        at once while the server is down, and a wait that ends when an outage is found."""
        gate = self.reachability
        if gate is None:
            return pool.getconn(timeout=self.settings.timeout)
        gate.admit()
        return self._checkout(pool, gate)

    def _failed(self, conn: PooledConnection, exc: psycopg.OperationalError) -> None:
        if isinstance(exc, DeadlinePassed):
            # The server took the query and did not answer: never retried here (_read).
            # Where outages are watched (a bounded look at the primary: health, the
            # replica watcher's), a probe in the background says whether it answers anyone.
            if self.reachability is not None:
                self.reachability.verify_soon()
            return
        if conn.broken:  # the server went away, or only this connection did
            if self.reachability is not None:
                self.reachability.verify()
            exc.connection_broken = True  # type: ignore[attr-defined]  # for _read

    def _checkout(self, pool: ConnectionPool, gate: Reachability) -> PooledConnection:
        # The pool's wait, in slices: an outage found by another caller (or by the pool
        # giving up a reconnection) ends this wait too, instead of the whole timeout.
        started = time.monotonic()
        deadline = started + self.settings.timeout
        asked = False
        while True:
            remaining = deadline - time.monotonic()
            try:
                conn = pool.getconn(timeout=max(0.001, min(WAIT_SLICE, remaining)))
            except PoolTimeout:
                if not asked and time.monotonic() - started >= PROBE_AFTER_WAITING:
                    # No connection came back for a while: its holders may be waiting on
                    # a server gone silent (frozen, a failover), which nothing else
                    # notices while every connection is lent. A probe says; busy but
                    # there, it connects and changes nothing. Nothing has failed yet: it
                    # waits as long as any connection may (a 2 s probe took a sound server
                    # slow to connect, 2.65 s, for one gone, and the API for down).
                    gate.verify_soon(patient=True)
                    asked = True
                if remaining <= WAIT_SLICE:
                    raise PoolTimeout(
                        f"no connection free after {self.settings.timeout:g} s"
                    ) from None
                gate.admit()
                continue
            if not conn.dropped_by_server():
                return conn
            # Never send a write down a connection the server has closed: it would fail
            # (a 503) though the server may be back. The others are likely dead too: a
            # probe, which drops them when the server answers.
            conn.close()
            pool.putconn(conn)  # a closed connection is discarded, and replaced
            gate.verify()
            gate.admit()

    def _probe(self) -> None:
        kwargs = {**self._connect_kwargs, "connect_timeout": PROBE_CONNECT_TIMEOUT}
        connect(self.conninfo, **kwargs).close()

    def _patient_probe(self) -> None:
        connect(self.conninfo, **self._connect_kwargs).close()  # CRUDDUR_CONNECT_TIMEOUT

    def _remember(self, conn: PooledConnection) -> None:
        with self._made_lock:
            self._made.add(conn)

    def _holding(self) -> bool:
        """Whether the pool holds a connection not known to be closed (idle or lent)."""
        with self._made_lock:
            return any(not conn.closed for conn in self._made)

    def writable_again(self) -> bool:
        """A pooled session says it takes no writes: whether a new one would (the
        database made writable since it began); if so, the pool's sessions are replaced.
        At most one new session a second (read_only.py)."""
        return self._read_only.refused()

    def _new_session_writable(self) -> bool:
        if self.behind_pooler:
            # A new client session lands on one of the pooler's server sessions, which
            # says nothing of the others: draining the pool would only churn it.
            return False
        gate = self.reachability
        if gate is not None and gate.holding_off():
            return False  # the server refused a connection a moment ago: not asked again
        kwargs = {**self._connect_kwargs, "connect_timeout": PROBE_CONNECT_TIMEOUT}
        with connect(self.conninfo, **{**kwargs, "autocommit": True}) as conn:
            # On in a session of a hot standby, or one begun with the default on.
            return conn.execute("SHOW transaction_read_only").fetchone()[0] == "off"

    def _renew_sessions(self) -> None:
        if self._pool is not None:
            self._pool.drain()  # idle sessions now, lent ones as they are given back

    def _drop_dead_connections(self) -> None:
        if self._pool is not None:
            self._pool.check()  # a round trip for each idle connection; dead ones replaced

    # -- queries -----------------------------------------------------------------

    @staticmethod
    def _execute(
        conn: PooledConnection,
        sql: str,
        params: Params,
        row_factory: RowFactory[Any] = tuple_row,
        binary: bool = False,
    ) -> psycopg.Cursor:
        try:
            return conn.helper_cursor(row_factory).execute(sql, params, binary=binary)
        except UnicodeEncodeError as exc:
            raise InvalidText(f"a value is not valid UTF-8 text: {exc.reason}") from exc
        except psycopg.DataError as exc:
            if exc.sqlstate is None and "NUL" in str(exc):  # refused by psycopg, client-side
                raise InvalidText("a text value contains a NUL (0x00) character") from exc
            raise

    def _using(self, work: Callable[[PooledConnection], Any], *, again: bool = True) -> Any:
        """work(a pooled connection), as `with self.connection() as conn: work(conn)` does
        it, without the generator-based context manager: the API calls this once a
        request, and that manager cost as much again as the pool's checkout and return.

        A session that refused a write only because it began while the database was
        read-only (read_only.py) is replaced, and the work done again, once, on a session
        begun now: the refusal wrote nothing. (The write that found the database writable
        again was a 503, as was each write already under way on an old session.)"""
        pool = self.pool
        conn = self._take(pool)
        timed = work if self.deadline is None else within(work, self.deadline)
        try:
            if conn.autocommit:
                return timed(conn)
            with conn:
                return timed(conn)
        except psycopg.OperationalError as exc:
            self._failed(conn, exc)
            raise
        except psycopg.errors.ReadOnlySqlTransaction:
            # Before putconn: a stale session is not given back.
            if not (self._read_only.refused() and again):
                raise
        finally:
            pool.putconn(conn)
        return self._using(work, again=False)

    def query_commit(self, sql: str, params: Params = None) -> Any:
        """Run a write in its own transaction; return RETURNING's first value, else None."""

        def write(conn: PooledConnection) -> Any:
            cur = self._execute(conn, sql, params)
            if cur.description is None:
                return None
            row = cur.fetchone()
            return None if row is None else row[0]

        return self._using(write)

    def query_commit_row(self, sql: str, params: Params = None) -> tuple | None:
        """Run a write in its own transaction; return its first row, or None when there is
        none: for a write that tells "no row" from a row holding NULL."""

        def write(conn: PooledConnection) -> tuple | None:
            cur = self._execute(conn, sql, params)
            return None if cur.description is None else cur.fetchone()

        return self._using(write)

    def query_rolled_back(self, sql: str, params: Params = None) -> Any:
        """query_commit's answer, or its error, with nothing kept: the write is rolled
        back. A dry run's: the database's own checks say what the real run would meet."""

        def attempt(conn: PooledConnection) -> Any:
            with conn.transaction(force_rollback=True):
                cur = self._execute(conn, sql, params)
                row = cur.fetchone() if cur.description is not None else None
            return None if row is None else row[0]

        return self._using(attempt)

    def _read(
        self,
        sql: str,
        params: Params,
        fetch: Callable[[psycopg.Cursor], Any],
        row_factory: RowFactory[Any] = tuple_row,
        binary: bool = False,
    ) -> Any:
        # Without a check on checkout, a connection the server dropped since its last use
        # (a restart, an idle timeout) is only found by using it. A read is safe to repeat:
        # once more, on a fresh connection. A restart drops every idle connection too, so
        # the pool checks them all first (a round trip each, only on this path) and
        # replaces the dead ones.
        def read(conn: PooledConnection) -> Any:
            return fetch(self._execute(conn, sql, params, row_factory, binary))

        for attempt in (1, 2):
            try:
                return self._using(read)
            except psycopg.OperationalError as exc:
                broken = getattr(exc, "connection_broken", False)
                if attempt == 2 or self.check or not broken:
                    raise
                if self.reachability is None:
                    self.pool.check()
                elif self.reachability.down:  # _using has asked; the server is gone
                    raise
        raise AssertionError("unreachable")

    def query_value(self, sql: str, params: Params = None) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self._read(sql, params, lambda cur: cur.fetchone())
        return None if row is None else row[0]

    def query_rows(
        self,
        sql: str,
        params: Params = None,
        row_factory: RowFactory[Row] = tuple_row,
        *,
        binary: bool = False,
    ) -> list[Row]:
        """Every row: tuples, or what `row_factory` makes of each (psycopg.rows: class_row
        for a dataclass with the query's column names, namedtuple_row, …).

        binary=True: the result in PostgreSQL's binary format (the same Python types, but
        text comes as UTF-8 bytes, for a body sent on as it is)."""
        return self._read(sql, params, lambda cur: cur.fetchall(), row_factory, binary)

    def query_row(
        self,
        sql: str,
        params: Params = None,
        row_factory: RowFactory[Row] = tuple_row,
        *,
        binary: bool = False,
    ) -> Row | None:
        """The first row (made by `row_factory`, as query_rows), or None when there is none."""
        return self._read(sql, params, lambda cur: cur.fetchone(), row_factory, binary)

    def query_array_json(self, sql: str, params: Params = None) -> str:
        """The query's rows as a JSON array built by PostgreSQL, as text ('[]' when none)."""
        return self.query_value(wrap_array(sql), params)

    def query_object_json(self, sql: str, params: Params = None) -> str:
        """The query's first row as a JSON object built by PostgreSQL, as text ('{}' when none)."""
        text = self.query_value(wrap_object(sql), params)
        return "{}" if text is None else text


class _Pinned(Db):
    """A Db whose query helpers run on one connection it does not own (Db.pinned)."""

    def __init__(self, db: Db, conn: PooledConnection) -> None:
        self.__dict__.update(db.__dict__)
        self._conn = conn
        # No second try on a fresh connection (_read): this one connection is the point.
        self.check = True

    def _using(self, work: Callable[[PooledConnection], Any]) -> Any:
        conn = self._conn
        if self.deadline is not None:
            work = within(work, self.deadline)
        try:
            if conn.autocommit:
                return work(conn)
            with conn:
                return work(conn)
        except psycopg.OperationalError as exc:
            self._failed(conn, exc)
            raise
        except psycopg.errors.ReadOnlySqlTransaction:
            self._read_only.refused()  # Db.pinned gives it back after the block
            raise
