"""`cruddur db migrate | rollback | migrations | new`: the schema, changed one version at a time."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cruddur.cli.db import INTERRUPTED, db
from cruddur.cli.options import Cli, Seconds, pass_cli, prod_option, yes_option
from cruddur.cli.output import done, info, printable, result, table, warn
from cruddur.cli.roles import grant_again
from cruddur.config import MIGRATION_LOCK_WAIT_MAX, ConfigError, duration
from cruddur.errors import Problem
from cruddur.ops.migrations.reporter import Reporter
from cruddur.telemetry.commands import traced_command

# The runner (and with it psycopg), the URL helpers and rich's tables are imported in the
# bodies that use them: `cruddur db --help` and the other db verbs then start without them.
if TYPE_CHECKING:
    from cruddur.config import MigrationSettings, Settings
    from cruddur.ops.migrations import runner
    from cruddur.ops.migrations.files import Migration
    from cruddur.ops.migrations.lock import LockHolder
    from cruddur.targets import Target

dir_option = click.option(
    "--migrations-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the migration files are (default: the package's src/cruddur/db/migrations).",
)


def _duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A duration option checked as click checks the others: a usage error (exit 2), as
    a bad --lock-wait is, not an error of the run (exit 1)."""
    if value is None:
        return None
    name = f"--{(param.name or '').replace('_', '-')}"
    try:
        return duration(name, value)
    except ConfigError as exc:  # "--lock-timeout must be …": click names the option itself
        raise click.BadParameter(str(exc).removeprefix(f"{name} "), ctx, param) from None


def _timeouts(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option(
        "--lock-wait",
        type=Seconds(maximum=MIGRATION_LOCK_WAIT_MAX),
        default=None,
        help="Seconds to wait for another migrate or rollback to finish "
        "[default: CRUDDUR_MIGRATION_LOCK_WAIT or 60].",
    )(command)
    command = click.option(
        "--statement-timeout",
        default=None,
        callback=_duration_option,
        help="How long one statement may run, e.g. 10min; 0: no limit "
        "[default: CRUDDUR_MIGRATION_STATEMENT_TIMEOUT or 0].",
    )(command)
    return click.option(
        "--lock-timeout",
        default=None,
        callback=_duration_option,
        help="How long a statement may wait for a table's lock before the migration fails, "
        "so it never queues every request behind a long transaction "
        "[default: CRUDDUR_MIGRATION_LOCK_TIMEOUT or 5s].",
    )(command)


def _settings(
    cli: Cli,
    lock_timeout: str | None,
    statement_timeout: str | None,
    lock_wait: float | None,
) -> MigrationSettings:
    chosen = cli.settings.migration
    if lock_timeout is not None:
        chosen = dataclasses.replace(chosen, lock_timeout=duration("--lock-timeout", lock_timeout))
    if statement_timeout is not None:
        chosen = dataclasses.replace(
            chosen, statement_timeout=duration("--statement-timeout", statement_timeout)
        )
    if lock_wait is not None:
        chosen = dataclasses.replace(chosen, lock_wait=lock_wait)
    return chosen


def migration_target(cli: Cli, *, quiet: bool = False) -> tuple[Target, str]:
    """The target database, and the direct URL migrations connect to. `quiet`: for a
    check before the migrations (`db setup`), saying nothing unless it refuses."""
    from cruddur.urls import (
        check,
        database_name,
        looks_like_rds,
        looks_like_rds_proxy,
        redact,
        same_database,
    )

    settings = cli.settings
    if not cli.prod and not settings.connection_url and settings.migration_connection_url:
        # It was ignored: the embedded server was migrated, and the output said "applied".
        raise ConfigError(
            "MIGRATION_CONNECTION_URL is set but CONNECTION_URL is not, so the target would "
            "be the embedded server: set CONNECTION_URL to the database "
            "MIGRATION_CONNECTION_URL reaches, or unset MIGRATION_CONNECTION_URL"
        )
    target = cli.target
    name, override = (
        ("PROD_MIGRATION_CONNECTION_URL", settings.prod_migration_connection_url)
        if target.source == "PROD_CONNECTION_URL"
        else ("MIGRATION_CONNECTION_URL", settings.migration_connection_url)
    )
    # Connected to as `conninfo`: an RDS endpoint with verify-full TLS (rds_tls), as every
    # other command connects; the URL alone let a man in the middle take the migration.
    if not override or target.embedded:
        url = target.conninfo
    else:
        check(name, override)
        if database_name(override) != target.dbname:
            raise ConfigError(
                f"{name} names database {database_name(override)!r}, but the target is "
                f"{target.dbname!r}: they must be the same database"
            )
        if not quiet:
            info(f"migrating through {name}: {redact(override)}")
        url = dataclasses.replace(target, url=override).conninfo
        _same_database_or_refuse(name, url, target, settings.migration.connect_timeout, quiet)
        # Production by the same rules as CONNECTION_URL: the migrations' URL is the
        # one that changes the schema, so it decides whether to ask first.
        production = looks_like_rds(override) or bool(
            settings.prod_connection_url and same_database(override, settings.prod_connection_url)
        )
        if production and not target.prod:
            target = dataclasses.replace(target, production=True)
        # A question names it too: a prompt that named only CONNECTION_URL's server (a
        # tunnel's port, or a server not even up) hid the one the migrations change.
        target = dataclasses.replace(target, migrations_through=f"{name}: {redact(override)}")
    # The lock is a session's: a transaction pooler hands the next statement to another
    # session (PgBouncer), or pins this one (RDS Proxy). Refuse rather than lock nothing.
    if looks_like_rds_proxy(url) or (url == target.conninfo and settings.replica.pooler):
        raise ConfigError(
            f"{redact(url)} goes through a transaction pooler (RDS Proxy or "
            "CRUDDUR_POOLER=transaction), where the migration lock cannot hold: set "
            f"{name} to the database's own endpoint (the RDS instance's, not the proxy's)"
        )
    return target, url


def _same_database_or_refuse(
    name: str, url: str, target: Target, connect_timeout: int, quiet: bool = False
) -> None:
    """The same database name is not enough: another server (staging, a laptop's copy)
    may hold a database of that name, and migrating it would leave the target as it was
    while the question named the target. When both answer, compare what they reach."""
    import psycopg

    from cruddur.db.errors import explain
    from cruddur.ops.migrations import runner

    try:
        theirs = runner.identity(target.conninfo, connect_timeout)
        ours = runner.identity(url, connect_timeout)
    except psycopg.Error as exc:  # e.g. the pooler is not reachable from here
        explained = explain(exc)
        why = explained.message if explained else type(exc).__name__
        if not quiet:
            warn(f"could not check that {name} reaches the target's database ({why}); going on")
        return
    if ours != theirs:
        raise ConfigError(
            f"{name} reaches another database than the target: both are named "
            f"{target.dbname!r}, on different servers; nothing was migrated",
            f"point {name} at the target's own server (for RDS, the instance endpoint "
            "behind the proxy), or unset it",
        )


class _Printer(Reporter):
    def __init__(self) -> None:
        self.finished_ones: list[Migration] = []  # committed, in the order they ran
        self.under_way: Migration | None = None

    def notice(self, severity: str, message: str) -> None:
        # Only a migration's: the runner's own bookkeeping (CREATE TABLE IF NOT EXISTS)
        # has the server say "already exists, skipping".
        if self.under_way is None:
            return
        said = f"{severity} from {self.under_way.file_name}: {printable(message)}"
        if severity == "WARNING":
            warn(said)
        else:
            info(said)

    def waiting(self, holder: LockHolder | None, wait: float) -> None:
        who = holder.describe() if holder else "another session"
        info(f"waiting up to {wait:g} s for the migration lock, held by {who}")

    def adopted(self, migration: Migration) -> None:
        done(
            f"adopted {migration.file_name}: the schema was already there, recorded as applied "
            "without running; every row stays"
        )

    def accepted(self, migration: Migration) -> None:
        done(f"recorded the edited {migration.file_name}'s checksum as applied (--accept-edited)")

    def out_of_order(self, migration: Migration, latest: str) -> None:
        warn(
            f"{migration.file_name} is out of order: older than {latest}, which is applied "
            "(written on another branch?); applying it now"
        )

    def starting(self, migration: Migration, direction: str) -> None:
        self.under_way = migration
        verb = "applying" if direction == "up" else "rolling back"
        info(f"{verb} {migration.file_name} …")

    def finished(self, migration: Migration, direction: str, seconds: float) -> None:
        self.under_way = None
        self.finished_ones.append(migration)
        verb = "applied" if direction == "up" else "rolled back"
        done(f"{verb} {migration.file_name} in {_duration(seconds)}")


@contextmanager
def _interrupted(printer: _Printer, direction: str, steps: int = 1) -> Iterator[None]:
    """Ctrl-C (SIGINT): one line on what was kept, and exit status 130. The runner holds
    an interrupt off during each migration's COMMIT and its report, so `printer` knows
    exactly which ones committed; the one under way rolled back with its transaction.
    `steps`: a rollback's --steps."""
    try:
        yield
    except KeyboardInterrupt as exc:
        from cruddur.ops.interrupts import CommitCut

        finished = printer.finished_ones
        verb = "applied" if direction == "up" else "rolled back"
        names = ", ".join(m.file_name for m in finished)
        kept = f"{verb} {len(finished)} ({names})" if finished else f"{verb} none"
        cut = printer.under_way
        section = None if cut is None else (cut.up if direction == "up" else cut.down)
        if isinstance(exc, CommitCut):
            shown = cut.file_name if cut is not None else "the migration under way"
            left = (
                f"{shown} was committing when Ctrl-C came again: whether it was kept is "
                "unknown; look with `bin/db-migrations`"
            )
        elif cut is None:
            left = "none was under way"
        elif section is not None and not section.transaction:
            again = _rollback_again(len(finished), steps)
            left = _outside_a_transaction(cut.file_name, direction, again)
        elif direction == "up":
            left = f"{cut.file_name} was under way and rolled back: nothing of it was kept"
        else:
            left = (
                f"{cut.file_name}'s down section was under way and rolled back: it is still applied"
            )
        warn(f"interrupted: {kept}; {left}")
        raise click.exceptions.Exit(INTERRUPTED) from None


def _outside_a_transaction(file_name: str, direction: str, again: str = "roll back again") -> str:
    """What a transaction:false section stopped part way (an error, Ctrl-C) leaves, and
    what to do. A down section's migration stays applied: DROP INDEX CONCURRENTLY stopped
    by a timeout leaves the index INVALID (and unused), and `migrate` would do nothing.
    `again`: the rollback to run (see _rollback_again)."""
    if direction == "up":
        return (
            f"{file_name}: it ran outside a transaction (transaction:false) and is not "
            "recorded: look for what it left, e.g. an INVALID index (DROP INDEX "
            "CONCURRENTLY it), then run again"
        )
    return (
        f"{file_name} is still applied, but its down section ran outside a transaction "
        f"(transaction:false) and what it began may stay (an INVALID index): {again}"
    )


def _rollback_again(rolled: int, steps: int) -> str:
    """The rollback to run after one of `steps` failed with `rolled` done: the same
    --steps again would take one migration too many."""
    if not rolled:
        return "roll back again"
    return f"roll back the rest with --steps {steps - rolled}"


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _hint(exc: runner.MigrationFailed, prod: bool, rolled: int = 0, steps: int = 1) -> str:
    """What to do after a failed section: for a lock or statement timeout, the command
    to run again (a failed rollback leaves its migration applied: `migrate` would do
    nothing) and, on production, the sessions of production. `rolled` of `steps`: the
    rollback's migrations already rolled back (committed) before this one failed."""
    up = exc.direction == "up"
    name = exc.migration.file_name
    if up:
        kept, again = "nothing of this migration was applied", "migrate again"
    elif rolled:
        kept = f"{rolled} of {steps} rolled back, then this one failed: {name} is still applied"
        again = _rollback_again(rolled, steps)
    else:
        kept, again = f"nothing was rolled back: {name} is still applied", "roll back again"
    if exc.sqlstate == "55P03":
        sessions = "`bin/db-sessions prod`" if prod else "`bin/db-sessions`"
        return (
            f"another session holds a lock on that table (a long transaction?); {kept}. "
            f"Find it with {sessions}, then {again}, or raise --lock-timeout"
        )
    if exc.sqlstate == "57014":
        rest = f", and {again}" if rolled else ""
        return (
            f"the statement ran past --statement-timeout; {kept}. Raise it for this run "
            f"(e.g. --statement-timeout 30min){rest}"
        )
    if exc.sqlstate == "25001":  # active_sql_transaction: CREATE INDEX CONCURRENTLY, VACUUM
        section = "up" if up else "down"
        return (
            f"nothing of {name} was kept; a statement that cannot run in a transaction "
            f"goes alone in a file whose section says so: '-- migrate:{section} "
            "transaction:false'"
        )
    if rolled:
        version = exc.migration.version
        return (
            f"nothing of {name}'s down section was kept ({kept}); fix it, then {again} "
            f"--accept-edited {version} (the fix changes the file)"
        )
    if not up:
        return (
            f"nothing of {name} was kept; fix its down section, then roll back again with "
            f"--accept-edited {exc.migration.version} (the fix changes the file)"
        )
    return f"nothing of {name} was kept; fix it and run again"


@contextmanager
def _reported(
    prod: bool = False, printer: _Printer | None = None, steps: int = 1
) -> Iterator[None]:
    """A failed migration as a Problem: its error, the statement, and what to do (the
    hint names this command's flags). `printer` and `steps`, for a rollback: how many of
    how many were rolled back before the failure."""
    from cruddur.ops.migrations import runner

    try:
        yield
    except runner.MigrationFailed as exc:
        statement = exc.statement.splitlines()
        shown = "\n           ".join(statement[:4]) + (" …" if len(statement) > 4 else "")
        # None to show after the file's statements (a deferred check, the bookkeeping).
        message = f"{exc}\nstatement: {shown}" if statement else str(exc)
        section = exc.migration.up if exc.direction == "up" else exc.migration.down
        rolled = len(printer.finished_ones) if printer and exc.direction == "down" else 0
        if section is not None and not section.transaction:
            again = _rollback_again(rolled, steps)
            hint = _outside_a_transaction(exc.migration.file_name, exc.direction, again)
        else:
            hint = _hint(exc, prod, rolled, steps)
        raise Problem(message, hint) from None


def _listing(migrations: list[Migration]) -> str:
    return "\n".join(f"  {m.file_name}" for m in migrations)


class SetupMigrations:
    """What `db setup`'s migrations step has done, for its Ctrl-C line."""

    def __init__(self) -> None:
        self.printer = _Printer()

    def said(self) -> str:
        finished, cut = self.printer.finished_ones, self.printer.under_way
        said = f"{len(finished)} migration{'s' if len(finished) != 1 else ''} applied"
        if cut is not None:
            said += f" ({cut.file_name} was under way)"
        return said


def apply_migrations(
    cli: Cli, migrations: list[Migration], *, confirm: bool, step: SetupMigrations | None = None
) -> list[Migration]:
    """Every pending one of `migrations` (the package's, loaded and checked by `db setup`
    before it dropped anything); asks first on production when `confirm` (setup's own
    question did not cover it). `step`: what it did, told as it goes."""
    from cruddur.ops.migrations import runner

    printer = (step or SetupMigrations()).printer
    target, url = migration_target(cli)
    chosen = cli.settings.migration
    with _reported(target.prod):
        asked = None  # what the question named, when one was asked
        if confirm and target.prod:
            with runner.connect(url, chosen.connect_timeout) as conn:
                current = runner.plan(conn, migrations)
            if current.pending or current.adopt:
                _describe(current)
                cli.confirm("apply these migrations", target)
                asked = current
        regrant = _regrant(cli.settings, url)
        with runner.locked(url, chosen, printer) as conn:
            applied = runner.migrate(
                conn, migrations, chosen, printer, regrant=regrant, confirmed=asked
            )
    grant_again(cli.settings, url)  # as `db migrate` does (a database given the roles before)
    return applied


@db.command()
@prod_option
@yes_option
@dir_option
@click.option("--dry-run", is_flag=True, help="Print what would run; change nothing.")
@click.option("--strict", is_flag=True, help="Refuse migrations older than the latest applied one.")
@click.option(
    "--accept-edited",
    "accept_edited",
    multiple=True,
    metavar="VERSION",
    help="Record the changed file of this applied migration as it is now (after checking "
    "the change is harmless). Repeatable.",
)
@_timeouts
@pass_cli
@traced_command("db migrate")
def migrate(
    cli: Cli,
    migrations_dir: Path | None,
    dry_run: bool,
    strict: bool,
    accept_edited: tuple[str, ...],
    lock_timeout: str | None,
    statement_timeout: str | None,
    lock_wait: float | None,
) -> None:
    """Apply every pending migration, in version order, each in its own transaction.

    One migrate at a time per database (an advisory lock); a second one waits, then
    finds nothing to do. A database made by schema-load is adopted: its first
    migration is recorded without running.
    """
    from cruddur.ops.databases import refuse_system_database
    from cruddur.ops.migrations import runner

    migrations = runner.load(migrations_dir)  # every file checked before anything runs
    chosen = _settings(cli, lock_timeout, statement_timeout, lock_wait)
    target, url = migration_target(cli)
    refuse_system_database(target.dbname, "migrate")
    printer = _Printer()
    with _interrupted(printer, "up"), _reported(target.prod):
        with runner.connect(url, chosen.connect_timeout) as conn:
            current = runner.plan(conn, migrations)
        _describe(current)
        # Refused as the real run would refuse, before asking, and in a dry run too (the
        # real run asked for the database's name, then refused for a reason known before).
        runner.refuse_over_invalid_indexes(current)
        runner.refuse_unknown_accepted(current, accept_edited)
        runner.refuse_unrunnable(current.pending, "up")
        if current.edited and not set(m.version for m in current.edited) <= set(accept_edited):
            raise runner.EditedMigrations(current.edited)
        if strict and current.out_of_order:
            raise runner.OutOfOrder(current.out_of_order, current.latest_applied)
        if dry_run:
            done("dry run: nothing was changed")
            return
        accepting = [m for m in current.edited if m.version in accept_edited]
        if current.pending or current.adopt or accepting:
            steps = []
            if current.pending or current.adopt:
                steps.append(f"apply {len(current.pending)} migration(s) to the schema")
            if accepting:  # a write to schema_migrations too
                files = ", ".join(m.file_name for m in accepting)
                steps.append(f"record the edited checksum of {files}")
            action = " and ".join(steps)
            cli.confirm(action, target)
        regrant = _regrant(cli.settings, url)
        with runner.locked(url, chosen, printer) as conn:
            applied = runner.migrate(
                conn,
                migrations,
                chosen,
                printer,
                strict=strict,
                accept_edited=accept_edited,
                regrant=regrant,
                confirmed=current,
            )
    if applied:
        done(f"{len(applied)} migration{'s' if len(applied) != 1 else ''} applied")
    else:
        done("nothing (else) to migrate: the schema is up to date")
    # Every migrate, even with nothing to apply: a deploy runs it, and that is how grants
    # narrowed in a new version (roles/grant.sql) reach a database migrated before.
    grant_again(cli.settings, url)


def _regrant(settings: Settings, url: str) -> runner.Regrant | None:
    """The application roles' grants, given again inside each migration's transaction: a
    table a migration makes anew is theirs as it commits, not once every later migration
    has run (nor never, when a later one fails). None where no roles were given here."""
    from cruddur.db import Db
    from cruddur.ops import roles
    from cruddur.ops.connections import admin_pool

    with Db(url, admin_pool(settings.pool), application_name="cruddur-cli") as database:
        given = roles.given_here(database)
    if not (given["api"] and given["lambda"]):
        return None
    return functools.partial(roles.grant_in, given=given)


def _describe(current: runner.Plan) -> None:
    _warn_invalid(current)
    for missing in current.missing:  # a schema_migrations row may hold anything: escaped
        warn(
            f"{printable(missing.version)}_{printable(missing.name)}.sql is applied but has "
            "no file here (another --migrations-dir, a newer checkout?)"
        )
    if current.adopt:
        info(f"to adopt (record as applied without running): {current.adopt.file_name}")
    for migration in current.edited:
        warn(f"{migration.file_name} changed since it was applied")
    if current.pending:
        info(f"pending ({len(current.pending)}):\n{_listing(current.pending)}")
        for migration in current.out_of_order:
            warn(f"{migration.file_name} is out of order (older than {current.latest_applied})")


@db.command()
@prod_option
@yes_option
@dir_option
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many of the latest applied migrations to roll back.",
)
@click.option("--dry-run", is_flag=True, help="Print what would run; change nothing.")
@click.option(
    "--accept-edited",
    "accept_edited",
    multiple=True,
    metavar="VERSION",
    help="Roll back this applied migration although its file changed since (its down "
    "section fixed after it failed). Repeatable.",
)
@_timeouts
@pass_cli
@traced_command("db rollback")
def rollback(
    cli: Cli,
    migrations_dir: Path | None,
    steps: int,
    dry_run: bool,
    accept_edited: tuple[str, ...],
    lock_timeout: str | None,
    statement_timeout: str | None,
    lock_wait: float | None,
) -> None:
    """Run the down sections of the latest applied migrations, newest first.

    A migration without a down section is refused, and then nothing is rolled back.
    """
    from cruddur.ops.databases import refuse_system_database
    from cruddur.ops.migrations import runner

    # A file not written yet is never applied: it does not stop a rollback of those that are.
    migrations = runner.load(migrations_dir, unfinished=[])
    chosen = _settings(cli, lock_timeout, statement_timeout, lock_wait)
    target, url = migration_target(cli)
    refuse_system_database(target.dbname, "roll back migrations in")
    printer = _Printer()
    with _interrupted(printer, "down", steps), _reported(target.prod, printer, steps):
        with runner.connect(url, chosen.connect_timeout) as conn:
            targets = runner.rollback_targets(
                runner.plan(conn, migrations), migrations, steps, accept_edited
            )
        info(f"to roll back ({len(targets)}), newest first:\n{_listing(targets)}")
        if dry_run:
            runner.refuse_unrunnable(targets, "down")  # as the real rollback refuses
            done("dry run: nothing was changed")
            return
        cli.confirm(f"roll back {len(targets)} migration(s) (their down sections)", target)
        regrant = _regrant(cli.settings, url)
        with runner.locked(url, chosen, printer) as conn:
            now = runner.rollback_targets(
                runner.plan(conn, migrations), migrations, steps, accept_edited
            )
            if now != targets:
                raise runner.MigrationError(
                    "the applied migrations changed since they were listed (another "
                    "deploy or rollback?); nothing was rolled back. Look again with "
                    "`bin/db-migrations`"
                )
            rolled = runner.rollback(
                conn, migrations, chosen, printer, steps=steps, regrant=regrant,
                accept_edited=accept_edited,
            )  # fmt: skip
    done(f"{len(rolled)} migration{'s' if len(rolled) != 1 else ''} rolled back")
    grant_again(cli.settings, url)


@db.command("migrations")
@prod_option
@dir_option
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit 1 when any migration is pending, was edited since applied, or is applied "
    "with no file here, or an index is INVALID (a stopped CREATE INDEX CONCURRENTLY); for "
    "deploy scripts.",
)
@pass_cli
def migrations_status(cli: Cli, migrations_dir: Path | None, exit_code: bool) -> None:
    """List the migrations: applied (with when), pending, out of order, edited."""
    from cruddur.ops.migrations import runner

    unfinished: list[str] = []  # listed, not refused: one `db new` file stopped the list
    migrations = runner.load(migrations_dir, unfinished)
    _, url = migration_target(cli)
    with runner.connect(url, cli.settings.migration.connect_timeout) as conn:
        current = runner.plan(conn, migrations)
    applied = {a.version: a for a in current.applied}
    edited = {m.version for m in current.edited}
    late = {m.version for m in current.out_of_order}
    rows: dict[str, tuple[str, str, str]] = {}
    for migration in migrations:
        found = applied.get(migration.version)
        if found is None and current.adopt is migration:
            status, when = "pending: adopt (record without running)", ""
        elif found is None:
            status = "pending, out of order" if migration.version in late else "pending"
            when = ""
        else:
            status = "applied" + (" (adopted)" if found.adopted else "")
            if migration.version in edited:
                status = "EDITED since applied"
            when = _when(found.applied_at)
        rows[migration.version] = (migration.name, status, when)
    for missing in current.missing:
        when = _when(missing.applied_at)
        rows[missing.version] = (missing.name, "applied, no file here", when)
    for file_name in unfinished:
        version, _, name = file_name.removesuffix(".sql").partition("_")
        if version not in rows:
            rows[version] = (name, "pending, unfinished: its up section has no statement", "")
    # A row of schema_migrations may name what no file here does: table() escapes it.
    table(
        ("version", "name", "status", "applied at (UTC)"),
        [(version, *rows[version]) for version in sorted(rows)],
    )
    _warn_invalid(current)
    count = len(current.applied)
    # One to adopt is pending too: `db migrate` would change the database (record it).
    pending = len(current.pending) + (current.adopt is not None) + len(unfinished)
    result_line = f"{count} applied, {pending} pending"
    if current.adopt:
        result_line += " (1 to adopt)"
    if current.edited:
        result_line += f", {len(current.edited)} edited since applied"
    if current.missing:
        result_line += f", {len(current.missing)} applied with no file here"
    if current.invalid_indexes:
        result_line += f", {len(current.invalid_indexes)} INVALID index(es)"
    if unfinished:
        result_line += f", {len(unfinished)} unfinished (fill in its up section, or remove it)"
    info(result_line)
    # An INVALID index fails the gate too: a migration or rollback outside a transaction
    # stopped halfway, and the schema is not what schema_migrations says.
    if exit_code and (pending or current.edited or current.missing or current.invalid_indexes):
        raise click.exceptions.Exit(1)


def _warn_invalid(current: runner.Plan) -> None:
    for index in current.invalid_indexes:
        warn(
            f"index {index} is INVALID (a CREATE or DROP INDEX CONCURRENTLY that failed or "
            "was stopped?): PostgreSQL does not use it. After a migrate that stopped, DROP "
            f"INDEX CONCURRENTLY {index}, then migrate again; after a rollback that stopped, "
            "roll back again"
        )


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


@db.command("new")
@dir_option
@click.argument("name")
def new_migration(migrations_dir: Path | None, name: str) -> None:
    """Write an empty migration NAME with the next version and both sections."""
    from cruddur.ops.migrations import runner
    from cruddur.ops.migrations.files import package_dir, write_new

    directory = migrations_dir or package_dir()
    try:
        if migrations_dir is not None and not directory.is_dir():
            # Your own folder: made on first use, and said (a mistyped one is seen at once).
            directory.mkdir(parents=True)
            info(f"made the migrations folder {directory} (it was not there)")
        existing = runner.load(directory)
        path = write_new(directory, name, existing)
    except OSError as exc:  # under /proc, a dangling link, a folder you may not write
        raise Problem(
            f"cannot write a migration in {directory}: {exc.strerror or exc}",
            "give --migrations-dir a folder you can write",
        ) from None
    result(str(path))
    done(f"wrote {path.name}: fill in its up and down sections")
