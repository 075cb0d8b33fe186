"""Apply and roll back migrations on one direct connection, under the migration lock.

Each migration and its bookkeeping row commit in one transaction, so a failure (or a
kill -9) leaves the database as it was before that migration. The core reports through
a `Reporter` and raises; it never prints.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.rows import class_row

from cruddur import connecting
from cruddur.config import MigrationSettings
from cruddur.db import ScriptError, template
from cruddur.db.dead_peer import with_cli_bounds
from cruddur.db.scripts import Statement, error_line, execute
from cruddur.errors import Problem
from cruddur.ops import interrupts
from cruddur.ops.migrations import catalog, lock
from cruddur.ops.migrations.files import Migration, Section, package_dir, refuse_unrunnable
from cruddur.ops.migrations.files import load as load_files
from cruddur.ops.migrations.reporter import Reporter as Reporter


@dataclass(frozen=True)
class Applied:
    version: str
    name: str
    checksum: str
    applied_at: datetime
    adopted: bool


@dataclass(frozen=True)
class Plan:
    bookkeeping: bool  # the schema_migrations table exists
    adopt: Migration | None  # recorded as applied without running: the schema is there
    applied: list[Applied]  # in the order they were applied
    pending: list[Migration]  # in version order
    out_of_order: list[Migration] = field(default_factory=list)  # pending, older than applied
    edited: list[Migration] = field(default_factory=list)  # changed since applied
    missing: list[Applied] = field(default_factory=list)  # applied, no file here
    invalid_indexes: list[str] = field(default_factory=list)  # a stopped CONCURRENTLY

    @property
    def latest_applied(self) -> str:
        versions = [a.version for a in self.applied]
        if self.adopt:
            versions.append(self.adopt.version)
        return max(versions, default="")


class MigrationError(Problem):
    """Migrations cannot go ahead; the message says why and what to do."""


class UnknownSchema(MigrationError):
    pass


class EditedMigrations(MigrationError):
    def __init__(self, edited: list[Migration]) -> None:
        self.edited = edited
        names = ", ".join(m.file_name for m in edited)
        super().__init__(
            f"changed since applied: {names}. Put the file back as it was and write a new "
            "migration for the change, or, if the change is harmless (a comment), accept it "
            "with --accept-edited VERSION"
        )


class OutOfOrder(MigrationError):
    def __init__(self, migrations: list[Migration], latest: str) -> None:
        names = ", ".join(m.file_name for m in migrations)
        super().__init__(
            f"out of order (older than the latest applied, {latest}): {names}; --strict refuses "
            "them. Give each a new version (`bin/db-new-migration`), or run without --strict"
        )


class InvalidIndexes(MigrationError):
    def __init__(self, indexes: list[str], migration: Migration) -> None:
        self.indexes = indexes
        names = ", ".join(indexes)
        drops = "; ".join(f"DROP INDEX CONCURRENTLY {index}" for index in indexes)
        super().__init__(
            f"INVALID index {names} (a CREATE INDEX CONCURRENTLY that failed or was stopped): "
            f"{migration.file_name} runs outside a transaction: run beside it, a CREATE "
            "INDEX CONCURRENTLY IF NOT EXISTS would take the index as built and record "
            f"the migration as applied. Nothing was applied; first {drops}, then migrate "
            "again"
        )


def refuse_over_invalid_indexes(current: Plan) -> None:
    """InvalidIndexes when a pending transaction:false migration would run beside an
    INVALID index: it is what such a migration left when it failed, and running it again
    (IF NOT EXISTS) would record it as applied with the index still unusable."""
    concurrent = [m for m in current.pending if not m.up.transaction]
    if concurrent and current.invalid_indexes:
        raise InvalidIndexes(current.invalid_indexes, concurrent[0])


class MigrationFailed(MigrationError):
    """A statement of a migration failed; nothing of that migration was kept."""

    def __init__(self, migration: Migration, direction: str, error: ScriptError) -> None:
        self.migration = migration
        self.direction = direction
        self.error = error
        super().__init__(str(error))

    @property
    def statement(self) -> str:
        return self.error.statement.text.strip()

    @property
    def sqlstate(self) -> str | None:
        return self.error.sqlstate


class AfterStatementsFailed(MigrationFailed):
    """What runs in a migration's transaction after its last statement failed: the
    deferred constraints and triggers its statements left to check, or the bookkeeping.
    Nothing of the migration was kept. No line is named: a deferred check does not say
    which statement queued it, and the bookkeeping is no statement of the file."""

    def __init__(
        self, migration: Migration, direction: str, what: str, cause: psycopg.Error | ScriptError
    ) -> None:
        self.migration = migration
        self.direction = direction
        self.what = what
        self.cause = cause
        first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        message = f"{migration.file_name}: {first} ({what})"
        detail = cause.diag.message_detail if isinstance(cause, psycopg.Error) else None
        if detail:  # which row: no statement is shown to tell
            message += f"\ndetail: {detail}"
        MigrationError.__init__(self, message)

    @property
    def statement(self) -> str:
        return ""

    @property
    def sqlstate(self) -> str | None:
        return self.cause.sqlstate


@contextmanager
def _after_statements(migration: Migration, direction: str, what: str) -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, ScriptError) as exc:
        raise AfterStatementsFailed(migration, direction, what, exc) from exc


def load(directory: Path | None = None, unfinished: list[str] | None = None) -> list[Migration]:
    """The migration files: the package's own unless a folder is given (`unfinished`:
    files.load's)."""
    return load_files(directory or package_dir(), unfinished)


def connect(url: str, connect_timeout: int = 5) -> psycopg.Connection:
    """A direct connection of its own, not the pool's: the lock lives as long as it does."""
    conn = connecting.connect(
        with_cli_bounds(url),
        autocommit=True,
        prepare_threshold=None,  # no prepared statements: safe behind a pooler too
        application_name="cruddur-migrate",
        connect_timeout=connect_timeout,
    )
    _session_defaults(conn)
    return conn


def _session_defaults(conn: psycopg.Connection) -> None:
    """The session as each migration starts it: a SET ROLE or SET search_path one left
    (outside SET LOCAL) applied to the next, which then made its tables as that role or
    in that schema, unlike in a run of its own."""
    conn.execute("RESET ALL")
    _as_connected(conn)
    if conn.info.server_version >= 140000:
        # A migrate killed mid-statement: the server notices within a second and rolls
        # back and frees the lock, instead of running the statement to its end first.
        conn.execute("SET client_connection_check_interval = '1s'")


def _as_connected(conn: psycopg.Connection) -> None:
    """Back to the role the connection logged in as: a migration's SET ROLE or SET
    SESSION AUTHORIZATION (which RESET ALL leaves) no longer in force."""
    conn.execute("RESET SESSION AUTHORIZATION")
    conn.execute("RESET ROLE")


def identity(url: str, connect_timeout: int = 5) -> tuple[str, int]:
    """The cluster's system identifier and the database's oid behind `url`: the same
    pair for two URLs means the same database, whatever server name each uses."""
    with connecting.connect(
        with_cli_bounds(url),
        autocommit=True,
        prepare_threshold=None,
        connect_timeout=connect_timeout,
    ) as conn:
        cluster, oid = conn.execute(template("database", "identity")).fetchone()
    return cluster, oid


@contextmanager
def locked(
    url: str, settings: MigrationSettings, reporter: Reporter
) -> Iterator[psycopg.Connection]:
    with connect(url, settings.connect_timeout) as conn:
        # A migration's RAISE NOTICE or WARNING, and the server's own warnings, as psql
        # and dbmate show them; they were dropped.
        conn.add_notice_handler(
            lambda diag: reporter.notice(
                diag.severity_nonlocalized or diag.severity or "NOTICE", diag.message_primary or ""
            )
        )
        lock.acquire(conn, settings.lock_wait, reporter.waiting)
        try:
            lock.ensure_held(conn)
            yield conn
        except BaseException:
            # The error that stopped it stands: a connection it left unusable (a COPY
            # from the client under way) cannot release, and need not: closing it below
            # frees a session lock. That release's own error replaced the migration's.
            with contextlib.suppress(lock.NotHeld, psycopg.Error):
                lock.release(conn)
            raise
        lock.release(conn)


BOOKKEEPING_COLUMNS = frozenset({"version", "name", "checksum", "applied_at", "adopted"})


def _refuse_foreign_bookkeeping(conn: psycopg.Connection) -> None:
    """UnknownSchema when public.schema_migrations is another tool's (it exists)."""
    (columns,) = conn.execute(template("migrations", "bookkeeping_columns")).fetchone()
    if not BOOKKEEPING_COLUMNS.issubset(columns):
        raise UnknownSchema(
            f"public.schema_migrations is not Cruddur's (its columns: {', '.join(columns)}; "
            "another migration tool's, such as dbmate's?); nothing was changed. Point "
            "CONNECTION_URL at Cruddur's database, or rename that table if this is it"
        )


def _applied(conn: psycopg.Connection) -> list[Applied]:
    _refuse_foreign_bookkeeping(conn)
    cur = conn.cursor(row_factory=class_row(Applied))
    return cur.execute(template("migrations", "applied")).fetchall()


def _adoption(conn: psycopg.Connection, migrations: list[Migration]) -> Migration:
    """The first migration, when the database already has exactly its schema."""
    baseline = load_files(package_dir())[0]
    first = migrations[0] if migrations else None
    if first is None or (first.version, first.checksum) != (baseline.version, baseline.checksum):
        raise UnknownSchema(
            "the database has tables but no schema_migrations table, and these migrations do "
            f"not start with {baseline.file_name}, the schema `schema-load` made; nothing "
            "was changed"
        )
    difference = catalog.compare(catalog.adoptable_shape(), catalog.shape(conn))
    if difference:
        raise UnknownSchema(
            "the database has tables but no schema_migrations table, and they are not the "
            f"schema {first.file_name} makes ({difference.describe()}); nothing was changed. "
            "Point CONNECTION_URL at Cruddur's database, or bring this one to that schema "
            "by hand (bin/db-setup rebuilds it, losing its rows)"
        )
    return first


def plan(conn: psycopg.Connection, migrations: list[Migration]) -> Plan:
    """What migrate would do, read without changing anything."""
    bookkeeping, tables = conn.execute(template("migrations", "state")).fetchone()
    adopt = None
    applied: list[Applied] = []
    if bookkeeping:
        applied = _applied(conn)
    elif tables:
        adopt = _adoption(conn, migrations)
    by_version = {a.version: a for a in applied}
    done = set(by_version) | ({adopt.version} if adopt else set())
    pending = [m for m in migrations if m.version not in done]
    files = {m.version for m in migrations}
    result = Plan(
        bookkeeping=bookkeeping,
        adopt=adopt,
        applied=applied,
        pending=pending,
        edited=[
            m
            for m in migrations
            if m.version in by_version and by_version[m.version].checksum != m.checksum
        ],
        missing=[a for a in applied if a.version not in files],
        invalid_indexes=[row[0] for row in conn.execute(template("migrations", "invalid_indexes"))],
    )
    latest = result.latest_applied
    result.out_of_order.extend(m for m in pending if m.version < latest)
    return result


def _set_timeouts(conn: psycopg.Connection, settings: MigrationSettings, *, local: bool) -> None:
    conn.execute(
        "SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)",
        [settings.lock_timeout, local, settings.statement_timeout, local],
    )


def _run(
    conn: psycopg.Connection,
    migration: Migration,
    statements: tuple[Statement, ...],
    direction: str,
) -> None:
    for statement in statements:
        try:
            execute(conn, statement)
        except psycopg.Error as exc:
            error = ScriptError(migration.file_name, statement, error_line(statement, exc), exc)
            raise MigrationFailed(migration, direction, error) from exc


def _step(
    conn: psycopg.Connection,
    migration: Migration,
    section: Section,
    direction: str,
    settings: MigrationSettings,
    bookkeeping: tuple[str, dict[str, object]],
    regrant: Regrant | None = None,
    hold: Callable[[], None] = lambda: None,
) -> None:
    """Run one section and its bookkeeping statement, in one transaction when it may.
    `regrant`: the application roles' privileges given again in that transaction, so a
    table the section makes anew is theirs when it commits. `hold`: called just before
    the COMMIT that records it (see interrupts.held)."""
    record_sql, params = bookkeeping

    def record() -> None:
        # As the role the migration connected as: a `SET ROLE` in the migration (not
        # LOCAL) made these run as that role ("permission denied for table
        # schema_migrations"). Reset within the transaction, so it holds as it commits.
        with _after_statements(migration, direction, "resetting the role it set"):
            _as_connected(conn)
        with _after_statements(migration, direction, "recording it in schema_migrations"):
            conn.execute(template("migrations", "create_table"))
            conn.execute(record_sql, params)
        if regrant is not None:
            with _after_statements(migration, direction, "granting the application roles"):
                regrant(conn)

    if section.transaction:
        with conn.transaction():
            lock.ensure_held(conn)  # in the step's transaction: it runs where the lock is
            _set_timeouts(conn, settings, local=True)
            _run(conn, migration, section.statements, direction)
            # Deferred constraints and triggers checked now, while Ctrl-C still stops
            # them; at the COMMIT, held (below), they would run beyond its reach. They
            # fail for what the section did, though no statement of it failed.
            what = f"checking the deferred constraints and triggers of its {direction} section"
            with _after_statements(migration, direction, what):
                conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
            record()
            hold()
        _session_defaults(conn)
        return
    # transaction:false (CREATE INDEX CONCURRENTLY): its one statement, then the row.
    lock.ensure_held(conn)
    _set_timeouts(conn, settings, local=False)
    try:
        _run(conn, migration, section.statements, direction)
    finally:
        # A session that ended mid-statement has no settings to reset; trying would
        # replace the migration's own error (file, statement, what it may leave) with
        # "the connection is closed".
        if not conn.closed:
            conn.execute("RESET lock_timeout; RESET statement_timeout")
    with conn.transaction():
        record()
        hold()
    _session_defaults(conn)


# Gives the application roles their privileges again, on the migration's connection.
Regrant = Callable[[psycopg.Connection], None]


def refuse_unknown_accepted(current: Plan, accept_edited: tuple[str, ...]) -> None:
    """--accept-edited names only applied migrations."""
    unknown = sorted(set(accept_edited) - {a.version for a in current.applied})
    if unknown:
        raise MigrationError(
            f"--accept-edited {', '.join(unknown)}: no applied migration has that version"
        )


def migrate(
    conn: psycopg.Connection,
    migrations: list[Migration],
    settings: MigrationSettings,
    reporter: Reporter,
    *,
    strict: bool = False,
    accept_edited: tuple[str, ...] = (),
    regrant: Regrant | None = None,
    confirmed: Plan | None = None,
) -> list[Migration]:
    """Apply every pending migration in version order; return those applied. `regrant`:
    run in each migration's transaction (see _step). `confirmed`: what the caller showed
    (and asked about) before taking the lock; a migration pending now that was not
    among them is refused, nothing applied (one rolled back meanwhile was applied again
    unasked). Fewer is fine: another migrate applied them."""
    current = plan(conn, migrations)
    if confirmed is not None:
        unasked = [m for m in _to_run(current) if m.version not in _versions(confirmed)]
        if unasked:
            raise MigrationError(
                "the pending migrations changed since they were listed (a rollback, "
                f"another deploy?): {', '.join(m.file_name for m in unasked)} "
                "would run too; nothing was applied. Look again with `bin/db-migrations`"
            )
    refuse_unknown_accepted(current, accept_edited)
    accepted = [m for m in current.edited if m.version in accept_edited]
    refused = [m for m in current.edited if m.version not in accept_edited]
    if refused:
        raise EditedMigrations(refused)
    if strict and current.out_of_order:
        raise OutOfOrder(current.out_of_order, current.latest_applied)
    refuse_over_invalid_indexes(current)
    refuse_unrunnable(current.pending, "up")  # before anything runs
    if current.adopt:
        with conn.transaction():
            conn.execute(template("migrations", "create_table"))
            conn.execute(template("migrations", "record"), _row(current.adopt, adopted=True))
        reporter.adopted(current.adopt)
    for migration in accepted:
        conn.execute(
            template("migrations", "accept_checksum"),
            {"version": migration.version, "checksum": migration.checksum},
        )
        reporter.accepted(migration)
    done: list[Migration] = []
    for migration in current.pending:
        if migration in current.out_of_order:
            reporter.out_of_order(migration, current.latest_applied)
        reporter.starting(migration, "up")
        started = time.monotonic()
        record = (template("migrations", "record"), _row(migration, adopted=False))
        # Ctrl-C during its COMMIT waits for it and for the report that it is applied.
        with interrupts.held() as hold:
            _step(conn, migration, migration.up, "up", settings, record, regrant, hold)
            reporter.finished(migration, "up", time.monotonic() - started)
            done.append(migration)
    return done


def _to_run(current: Plan) -> list[Migration]:
    """What migrate would record: the one to adopt, then the pending ones."""
    return ([current.adopt] if current.adopt else []) + current.pending


def _versions(current: Plan) -> set[str]:
    return {m.version for m in _to_run(current)}


def _row(migration: Migration, *, adopted: bool) -> dict[str, object]:
    return {
        "version": migration.version,
        "name": migration.name,
        "checksum": migration.checksum,
        "adopted": adopted,
    }


def rollback_targets(
    current: Plan, migrations: list[Migration], steps: int, accept_edited: tuple[str, ...] = ()
) -> list[Migration]:
    """The latest `steps` applied migrations, newest first; refused unless each can go back.
    `accept_edited`: versions whose file changed since applied (a down section fixed after
    it failed, say) that may go back as they are now."""
    refuse_unknown_accepted(current, accept_edited)
    by_version = {m.version: m for m in migrations}
    latest = sorted(current.applied, key=lambda a: (a.applied_at, a.version), reverse=True)
    if len(latest) < steps:
        raise MigrationError(
            f"only {len(latest)} migration{'s are' if len(latest) != 1 else ' is'} applied; "
            f"cannot roll back {steps}"
        )
    chosen: list[Migration] = []
    for applied in latest[:steps]:
        migration = by_version.get(applied.version)
        label = f"{applied.version}_{applied.name}.sql"
        if migration is None:
            raise MigrationError(
                f"{label} is applied but its file is not here; cannot roll it back. Check "
                "out the code that has it, or give --migrations-dir a folder that does"
            )
        if migration.checksum != applied.checksum and applied.version not in accept_edited:
            raise MigrationError(
                f"{label} changed since it was applied; its down section may not undo what "
                f"ran. If only its down section changed (fixed after it failed), roll back "
                f"with --accept-edited {applied.version}"
            )
        if migration.down is None:
            raise MigrationError(
                f"{label} has no down section, so it cannot be rolled back; nothing was rolled "
                "back. Write a new migration that undoes it instead"
            )
        if migration.down.empty:
            # `db new`'s file with only its up section written: it said "no down section".
            raise MigrationError(
                f"{label}'s down section is empty, so it cannot be rolled back; nothing was "
                f"rolled back. Write its down section and roll back with --accept-edited "
                f"{applied.version}, or write a new migration that undoes it"
            )
        chosen.append(migration)
    return chosen


def rollback(
    conn: psycopg.Connection,
    migrations: list[Migration],
    settings: MigrationSettings,
    reporter: Reporter,
    *,
    steps: int = 1,
    regrant: Regrant | None = None,
    accept_edited: tuple[str, ...] = (),
) -> list[Migration]:
    """Run the down sections of the latest `steps` applied migrations, newest first."""
    current = plan(conn, migrations)
    targets = rollback_targets(current, migrations, steps, accept_edited)
    refuse_unrunnable(targets, "down")
    for migration in targets:
        assert migration.down is not None
        reporter.starting(migration, "down")
        started = time.monotonic()
        forget = (template("migrations", "forget"), {"version": migration.version})
        with interrupts.held() as hold:
            _step(conn, migration, migration.down, "down", settings, forget, regrant, hold)
            reporter.finished(migration, "down", time.monotonic() - started)
    return targets


def migrate_url(
    url: str,
    settings: MigrationSettings | None = None,
    reporter: Reporter | None = None,
    migrations: list[Migration] | None = None,
) -> list[Migration]:
    """Lock, migrate and let go, in one call (the tests' template database uses it; the CLI
    goes through its own steps to report and confirm)."""
    settings = settings or MigrationSettings()
    reporter = reporter or Reporter()
    with locked(url, settings, reporter) as conn:
        return migrate(conn, load() if migrations is None else migrations, settings, reporter)


def record_all(conn: psycopg.Connection, migrations: list[Migration]) -> None:
    """After schema.sql (which equals every migration): start the bookkeeping afresh,
    every migration recorded as applied without running. Inside the caller's transaction.
    Another tool's table of that name is refused, as migrate refuses it (it was dropped,
    its history with it)."""
    bookkeeping, _ = conn.execute(template("migrations", "state")).fetchone()
    if bookkeeping:
        _refuse_foreign_bookkeeping(conn)
    conn.execute("DROP TABLE IF EXISTS public.schema_migrations")
    conn.execute(template("migrations", "create_table"))
    for migration in migrations:
        conn.execute(template("migrations", "record"), _row(migration, adopted=True))
