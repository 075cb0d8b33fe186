"""`cruddur db …`: the database verbs behind bin/db-*."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import click
from click.core import ParameterSource

from cruddur.cli.options import (
    Cli,
    Seconds,
    TargetCommand,
    env_file_read,
    for_prod,
    if_interrupted,
    pass_cli,
    prod_option,
    yes_option,
)
from cruddur.cli.output import cruddur_command, done, info, result, table, warn
from cruddur.cli.roles import (
    check_env_file,
    grant_again,
    grant_recorded_roles,
    roles_command,
    set_up_roles,
)
from cruddur.config import (
    PURGE_BATCH_DEFAULT,
    PURGE_BATCH_MAX,
    PURGE_GRACE_MAX,
    PURGE_NICE_RATIO_DEFAULT,
    PURGE_NICE_RATIO_MAX,
)
from cruddur.errors import Problem
from cruddur.ops.fake_rows import MAX_ACTIVITIES, MAX_USERS
from cruddur.ops.role_names import API_ROLE, LAMBDA_ROLE
from cruddur.safe_paths import trusted_program
from cruddur.telemetry.commands import traced_command

# Each verb imports the ops it runs (and with them psycopg) and rich's tables in its own
# body: `cruddur db --help`, and every verb's start, then load only what that verb uses.
if TYPE_CHECKING:
    from cruddur.config import Settings
    from cruddur.db import Db
    from cruddur.targets import Target


INTERRUPTED = 130  # the shell's status for a command stopped by SIGINT (128 + 2)
# The state column of another role's session, which this role may not see (db sessions).
HIDDEN_STATE = "(another role's)"


class DbGroup(click.Group):
    command_class = TargetCommand  # a stray `prod` says where it goes


@click.group(cls=DbGroup)
def db() -> None:
    """Create, load, inspect and drop the Cruddur database."""


@db.command(context_settings={"ignore_unknown_options": True})
@prod_option
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def connect(cli: Cli, psql_args: tuple[str, ...]) -> None:
    """Open psql on the database. Extra arguments go to psql (after --)."""
    from psycopg.conninfo import make_conninfo

    from cruddur.urls import parse, without_secrets

    target = cli.target
    psql = _find_psql(cli)
    # For RDS: sslmode=verify-full and the RDS CA bundle, as for every connection.
    conninfo, password, secrets = without_secrets(target.conninfo)
    env = dict(os.environ)
    # Bounded as every other verb's connection (CRUDDUR_CONNECT_TIMEOUT), unless the URL
    # or PGCONNECT_TIMEOUT says otherwise: without it psql waited on a server that never
    # answered (a security group dropping this address) for the kernel's TCP timeout.
    env.setdefault("PGCONNECT_TIMEOUT", str(cli.settings.pool.connect_timeout))
    if password is not None:
        env["PGPASSWORD"] = password  # not on the command line, where `ps` shows it
    if secrets:  # sslpassword…: no variable of libpq's takes them, a service file does
        if "service" in parse(conninfo):
            raise Problem(
                "the URL names a service and holds a secret option "
                f"({', '.join(secrets)}): psql cannot be given both",
                "put the secret in that service's entry instead",
            )
        env["PGSERVICEFILE"] = _service_file(secrets)
        conninfo = make_conninfo(conninfo, service=PSQL_SERVICE)
    os.execve(psql, [psql, f"--dbname={conninfo}", *psql_args], env)


PSQL_SERVICE = "cruddur"


def _service_file(secrets: dict[str, str]) -> str:
    """A libpq service file holding `secrets`, as a path psql can open: an in-memory
    file (memfd) it inherits, so nothing is written to disk or left behind; it goes
    when psql exits, and only its owner (and root) can open it (/proc/PID/fd)."""
    if not hasattr(os, "memfd_create"):
        raise Problem(
            f"{', '.join(secrets)} in the URL would show on psql's command line here",
            "put it in a service file of your own (PGSERVICEFILE) and name the service",
        )
    lines = [f"[{PSQL_SERVICE}]"]
    for name, value in secrets.items():
        # A service file's line ends at a newline, and libpq trims spaces around it.
        if value != value.strip() or "\n" in value or "\r" in value:
            raise Problem(f"{name} starts or ends with a space or holds a line break")
        lines.append(f"{name}={value}")
    fd = os.memfd_create("cruddur-psql-service", 0)  # no MFD_CLOEXEC: psql keeps it
    os.fchmod(fd, 0o600)
    os.write(fd, ("\n".join(lines) + "\n").encode())
    os.set_inheritable(fd, True)
    return f"/proc/self/fd/{fd}"  # "self" is psql once it runs: the same fd there


def _find_psql(cli: Cli) -> str:
    from cruddur.embedded import candidate_bin_dirs
    from cruddur.targets import embedded_server

    if cli.target.embedded:
        candidates = [embedded_server(cli.settings).bin_dir()]
    else:
        candidates = [Path(p).parent for p in [shutil.which("psql")] if p]
        candidates += candidate_bin_dirs(cli.settings.pg_bin)
    for directory in candidates:
        if (directory / "psql").is_file():
            # Only a program no other user can swap: this may be root running it.
            return str(trusted_program(directory / "psql"))
    raise Problem("psql not found", "install the PostgreSQL client (Debian: postgresql-client)")


@db.command()
@prod_option
@pass_cli
def create(cli: Cli) -> None:
    """Create the database named in the URL (already there: say so, succeed)."""
    from cruddur.ops import databases
    from cruddur.ops.connections import server_db

    target = cli.target
    with server_db(target, cli.settings.pool) as server:
        created = databases.create(server, target.dbname)
    if created:
        done(f'created database "{target.dbname}"')
        if grant_recorded_roles(cli.settings, target):
            done(f"roles {API_ROLE} and {LAMBDA_ROLE} may use it (migrations grant their tables)")
    else:
        done(f'database "{target.dbname}" already exists; nothing to do')


@db.command()
@prod_option
@yes_option
@click.option("--force", is_flag=True, help="Disconnect other sessions first (WITH (FORCE)).")
@pass_cli
def drop(cli: Cli, force: bool) -> None:
    """Drop the database. Refuses while others are connected, unless --force."""
    from cruddur.ops import databases
    from cruddur.ops.connections import server_db

    target = cli.target
    cli.confirm(f'DROP DATABASE "{target.dbname}"')
    with server_db(target, cli.settings.pool) as server:
        try:
            dropped = databases.drop(server, target.dbname, force=force)
        except databases.DatabaseInUse as exc:
            if not exc.kept and cli.settings.replica.behind_pooler(target.url):
                # The pooler keeps server connections open after each client's (the
                # previous command's): they are the "other sessions" as often as not.
                exc.hint = (
                    f"{exc.hint}. Behind a pooler (CRUDDUR_POOLER) they may be its own idle "
                    "server connections, left by your earlier commands: `--force` ends "
                    "them, or drop through the database's direct URL"
                )
            raise
    if dropped:
        done(f'dropped database "{target.dbname}"')
    else:
        done(f'database "{target.dbname}" does not exist; nothing to drop')


@db.command("kill-all")
@prod_option
@yes_option
@pass_cli
def kill_all(cli: Cli) -> None:
    """Disconnect every other session from the database."""
    from cruddur.ops import databases
    from cruddur.ops.connections import server_db

    target = cli.target
    cli.confirm(f'disconnect every session from "{target.dbname}"')
    with server_db(target, cli.settings.pool) as server:
        if not databases.exists(server, target.dbname):  # a mistyped name: not "0 ended"
            done(f'database "{target.dbname}" does not exist; no session to end')
            return
        count, kept = databases.kill_all(server, target.dbname)
    done(f"disconnected {count} session{'s' if count != 1 else ''}")
    if kept:  # other roles' sessions: "disconnected 0 sessions" left them connected
        raise databases.SessionsKept(target.dbname, kept, still=True)


def _load(database: Db, *scripts: str) -> None:
    from cruddur.ops import loading

    for script in scripts:
        count = loading.load(database, script)
        done(f"{script}: {count} statements")
        if script == loading.SEED:
            for handle in loading.seed_users_left_out(database):
                warn(
                    f"@{handle} is another user's: the seed's {handle}, its cruds and the "
                    "replies to them were left out"
                )


@db.command("schema-load")
@prod_option
@yes_option
@pass_cli
def schema_load(cli: Cli) -> None:
    """Load schema.sql: recreates the tables (users, activities, idempotency keys): their
    rows are lost.

    For a local database. On production, `cruddur db migrate --prod` changes the
    schema and keeps every row.
    """
    from cruddur.ops import databases, loading
    from cruddur.ops.connections import database_db

    target = cli.target
    databases.refuse_system_database(target.dbname, "load the schema into")
    if target.prod:
        warn(
            "schema-load replaces the users, activities and idempotency keys tables: every "
            "row is lost. To "
            "change production's schema and keep its rows, use `bin/db-migrate prod`"
        )
    cli.confirm("replace the users, activities and idempotency keys tables")
    with database_db(target, cli.settings.pool) as database:
        count = loading.load_schema(database)
        done(f"{loading.SCHEMA}: {count} statements; every migration recorded as applied")
    grant_again(cli.settings, target.conninfo)


def _fake_count(name: str, default: int, most: int, says: str) -> Any:
    """--users or --activities of `db seed --fake`: at most `most`, which bounds the
    memory the rows are planned in (fake_rows.MAX_USERS and MAX_ACTIVITIES)."""
    count = click.IntRange(min=0, max=most)
    return click.option(
        name, type=count, default=default, show_default=True, help=f"With --fake: {says}"
    )


@db.command()
@prod_option
@yes_option
@click.option(
    "--fake",
    is_flag=True,
    help="Instead of seed.sql, add made-up users and cruds in bulk (through COPY), "
    "for benchmarks. They are added to what is there; the seed users keep working.",
)
@_fake_count("--users", 1000, MAX_USERS, "how many fake users.")
@_fake_count(
    "--activities",
    100_000,
    MAX_ACTIVITIES,
    "how many fake cruds (a fifth of them replies), over the last 30 days.",
)
@click.option(
    "--seed",
    "random_seed",
    # Python's random takes a negative seed as its absolute value: -5 made 5's rows.
    type=click.IntRange(min=0),
    default=None,
    help="With --fake: the random seed (0 or more); the same seed makes the same rows. "
    "Default: a new one, printed at the end.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="With --fake: first delete earlier fake users (cognito_user_id FAKE-…) and their cruds.",
)
@click.pass_context
@traced_command("db seed")
def seed(
    ctx: click.Context,
    fake: bool,
    users: int,
    activities: int,
    random_seed: int | None,
    replace: bool,
) -> None:
    """Load seed.sql: sample users and cruds to develop against.

    With --fake, add USERS made-up users and ACTIVITIES made-up cruds instead, e.g.
    `cruddur db seed --fake --users 10000 --activities 1000000` for the feed benchmark.
    """
    from cruddur.ops import databases, loading
    from cruddur.ops.connections import database_db

    if not fake:
        given = [
            f"--{name.replace('random_seed', 'seed')}"
            for name in ("users", "activities", "random_seed", "replace")
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} only with --fake"
            )
    elif activities > 0 and users == 0:
        raise click.UsageError(
            "fake activities need fake users to post them: --users must be at least 1"
        )
    cli = ctx.ensure_object(Cli)
    databases.refuse_system_database(cli.target.dbname, "seed")
    if not fake:
        cli.confirm("insert the sample users and cruds")
        with database_db(cli.target, cli.settings.pool) as database:
            _load(database, loading.SEED)
        return
    action = (
        f"add {users:,} fake user{'s' * (users != 1)} and {activities:,} fake "
        f"crud{'s' * (activities != 1)} (every feed shows them)"
    )
    if replace:
        action = f"delete earlier fake users and their cruds, then {action}"
    cli.confirm(action)
    _seed_fake(cli, users, activities, random_seed, replace)


def _seed_fake(
    cli: Cli,
    users: int,
    activities: int,
    random_seed: int | None,
    replace: bool,
) -> None:
    from cruddur.cli.progress import RowsProgress
    from cruddur.ops import fake as fake_data
    from cruddur.ops.connections import database_db
    from cruddur.ops.fake_rows import FakeData

    # Until load() starts, a Ctrl-C (planning the rows, connecting) is the CLI's to report.
    if_interrupted("nothing was written" + (" or deleted" if replace else ""))
    if random_seed is None:
        random_seed = secrets.randbelow(1_000_000)
    data = FakeData(users, activities, random_seed)
    db = database_db(cli.target, cli.settings.pool)
    with db as database, RowsProgress(users + activities) as bar:
        try:
            loaded = fake_data.load(database, data, replace=replace, progress=bar)
            if_interrupted(None)
        except KeyboardInterrupt as exc:
            from cruddur.ops.interrupts import CommitCut

            bar.stop()
            if isinstance(exc, CommitCut):
                kept = (
                    "the load was committing when Ctrl-C came again: whether it was kept "
                    "is unknown (count the users)"
                )
            elif bar.stage_now in ("committing", "analyzing"):  # load waits for its COMMIT
                kept = (
                    f"all {_counted(users, 'user', 'users')} and "
                    f"{_counted(activities, 'crud', 'cruds')} were written"
                )
                if replace:
                    kept += " (the earlier fake ones deleted)"
                kept += "; the tables were not analyzed (ANALYZE users, activities)"
            else:  # load's one transaction rolled back
                kept = "nothing was written" + (" or deleted" if replace else "")
            warn(f"interrupted: {kept}")
            raise click.exceptions.Exit(INTERRUPTED) from None
        except Exception as exc:
            from cruddur.cli import as_problem

            problem = as_problem(exc)
            if problem is None:
                raise
            if isinstance(exc, fake_data.FakeDataClash):
                problem.hint = (
                    "pass --replace to remove the earlier fake data first, or another --seed"
                )
            # The seed was picked at random unless given: without it the run is lost.
            problem.message += f" (seed {random_seed}: `--seed {random_seed}` makes the same rows)"
            raise problem from (None if problem is exc else exc)
    if replace:
        done(
            f"deleted {loaded.removed_users:,} earlier fake users and their cruds "
            f"in {loaded.removed_seconds:.1f} s"
        )
    rate = loaded.rows / loaded.seconds if loaded.seconds else 0
    shown = f"{rate / 1000:,.0f}k" if rate >= 10_000 else f"{rate:,.0f}"
    done(
        f"{_counted(loaded.activities, 'activity', 'activities')} and "
        f"{_counted(loaded.users, 'user', 'users')} in {loaded.seconds:.1f} s ({shown} rows/s)"
    )
    info(f"seed {random_seed}: `--seed {random_seed}` makes the same rows again")


def _counted(count: int, one: str, many: str) -> str:
    """`1 user`, `1,000 users`."""
    return f"{count:,} {one if count == 1 else many}"


MAX_GRACE_DAYS = PURGE_GRACE_MAX.days


class Duration(click.ParamType):
    """A length of time: 1d, 12h, 30m, 45s, or 0; at most `max_days` days."""

    name = "duration"
    _UNITS: ClassVar[dict[str, str]] = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}

    def __init__(self, max_days: int = MAX_GRACE_DAYS) -> None:
        self.max_days = max_days

    def convert(self, value, param, ctx) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        if text == "0":
            return timedelta(0)
        number, unit = text[:-1], text[-1:]
        if unit not in self._UNITS or not (number.isascii() and number.isdigit()):
            self.fail(f"{value!r} is not a duration such as 1d, 12h, 30m or 45s", param, ctx)
        length = self._length(number, self._UNITS[unit])
        if length is None or length > timedelta(days=self.max_days):
            # A bound of our own: timedelta overflows, and PostgreSQL's timestamps end.
            self.fail(f"{value!r} is too long: at most {self.max_days}d", param, ctx)
        return length

    @staticmethod
    def _length(number: str, unit: str) -> timedelta | None:
        """None past timedelta's end (999,999,999 days) or int()'s (4,300 digits)."""
        try:
            return timedelta(**{unit: int(number)})
        except (OverflowError, ValueError):
            return None


@db.command("purge-expired")
@prod_option
@yes_option
@click.option(
    "--grace",
    type=Duration(),
    default="1d",
    show_default=True,
    help=f"Purge only what expired longer ago than this (1d, 12h, 30m, 45s, 0; "
    f"at most {MAX_GRACE_DAYS}d).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=PURGE_BATCH_MAX),
    default=PURGE_BATCH_DEFAULT,
    show_default=True,
    help="Activities deleted per transaction (each holds its row locks only this long).",
)
@click.option(
    "--nice-ratio",
    type=Seconds(PURGE_NICE_RATIO_MAX, unit="times"),  # FloatRange let nan through
    default=PURGE_NICE_RATIO_DEFAULT,
    show_default=True,
    help="After each batch, rest this many times as long as it took, so the API keeps "
    "most of the database (0: no rest, fastest).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@pass_cli
def purge_expired(
    cli: Cli, grace: timedelta, batch_size: int, nice_ratio: float, dry_run: bool
) -> None:
    """Delete cruds that expired more than GRACE ago, with their replies, in batches.

    No one can read an expired crud; left in place, they grow the table, its indexes and
    vacuum's work every day. The cutoff is fixed at the start, so cruds expiring while
    it runs are left alone, as are cruds with a reply that has not expired yet.
    """
    from cruddur.cli.progress import RowsProgress
    from cruddur.ops import purge as purging
    from cruddur.ops.connections import database_db

    if_interrupted("nothing was deleted")  # until the batches' own handler below
    with database_db(cli.target, cli.settings.pool) as database:
        before = purging.cutoff(database, grace)
        found = purging.expired(database, before)
        when = f"{before:%Y-%m-%d %H:%M:%S %Z}"
        what = f"{_cruds_and_replies(found)} that expired before {when}"
        if dry_run:
            done(f"dry run: would delete {what}; nothing deleted")
            return
        if found.total == 0:
            done(f"nothing expired before {when}; nothing to delete")
            return
        cli.confirm(f"delete {what}")
        kept: list[purging.Counts] = []  # the batches committed, each reported once it is

        def committed(batch: purging.Counts) -> None:
            kept.append(batch)
            bar.advance(batch.total)

        try:
            with RowsProgress(found.total) as bar:
                bar.stage("purging")
                purged = purging.purge(
                    database,
                    before,
                    batch_size=batch_size,
                    nice_ratio=nice_ratio,
                    progress=committed,
                )
            if_interrupted(None)
        except KeyboardInterrupt as exc:
            from cruddur.ops.interrupts import CommitCut

            gone = sum(kept, purging.Counts())
            rest = (
                "the batch under way was committing when Ctrl-C came again: whether it was "
                "kept is unknown"
                if isinstance(exc, CommitCut)
                else "nothing else was"
            )
            warn(
                f"interrupted: {len(kept):,} batch{'' if len(kept) == 1 else 'es'} committed, "
                f"{_cruds_and_replies(gone)} deleted; {rest} "
                "(run it again for the rest)"
            )
            raise click.exceptions.Exit(INTERRUPTED) from None
        except Exception as exc:
            if isinstance(exc, click.exceptions.ClickException | click.exceptions.Exit):
                raise
            # Each batch is its own transaction: what committed stays deleted. Said here,
            # since the error line below says only what went wrong (the Lambda says both).
            gone = sum(kept, purging.Counts())
            warn(
                f"stopped: {len(kept):,} batch{'' if len(kept) == 1 else 'es'} committed "
                f"before the error, {_cruds_and_replies(gone)} "
                "deleted; the batch under way was not kept, unless the connection was lost "
                "as it committed (run it again for the rest)"
            )
            raise
    rate = purged.deleted.total / purged.seconds if purged.seconds else 0
    done(
        f"deleted {_cruds_and_replies(purged.deleted)} in "
        f"{purged.batches:,} batch{'' if purged.batches == 1 else 'es'}, "
        f"{purged.seconds:.1f} s ({rate:,.0f} rows/s)"
    )
    info("the space is reused by new rows; VACUUM (autovacuum soon) marks it free")


@db.command()
@prod_option
@pass_cli
def sessions(cli: Cli) -> None:
    """List the server's sessions: who is connected to which database."""
    from cruddur.ops import databases
    from cruddur.ops.connections import server_db

    with server_db(cli.target, cli.settings.pool) as server:
        rows = databases.sessions(server)
    # A database's, user's or application's name is anyone's text: table() escapes it.
    # Another role's session, whose state and address this role may not see, says so
    # where its state would be.
    cells = [
        (r.process_id, r.user, r.db, r.client_addr, r.app, HIDDEN_STATE if r.hidden else r.state)
        for r in rows
    ]
    table(
        ("pid", "user", "database", "client address", "application", "state"),
        [["" if value is None else str(value) for value in values] for values in cells],
    )
    hidden = sum(r.hidden for r in rows)
    info(
        f"{len(rows)} session{'s' if len(rows) != 1 else ''}"
        + (
            f" ({hidden} of other roles: this role may not see their state or address; a "
            "superuser, or a member of pg_read_all_stats or of their role, may)"
            if hidden
            else ""
        )
    )


@db.command()
@prod_option
@yes_option
@click.option(
    "--force",
    is_flag=True,
    help="On production, disconnect other sessions before dropping (locally it always does).",
)
@click.option(
    "--if-missing",
    is_flag=True,
    help="Keep a database that already has the schema; only set up what is missing.",
)
@pass_cli
def setup(cli: Cli, force: bool, if_missing: bool) -> None:
    """Drop, create, migrate, seed, grant roles: a fresh database.

    Then, as `cruddur db roles` does, it makes the API's and the Lambda's login roles
    (server-wide: cruddur_api, cruddur_lambda) if missing and grants them their rows; a
    new role's password goes to the embedded server's state, or to a file only you can
    read (.cruddur/db-roles.env; db-roles-prod.env with --prod).

    Locally it disconnects whoever holds the database first (a running `cruddur serve`
    reconnects by itself); on production it refuses while others are connected, unless
    --force, and asks for the database name first. With --if-missing, an existing
    database is kept: its pending migrations are applied (a database from schema-load
    is adopted), and only one without the schema is seeded.
    """
    from cruddur.cli.migrations import (  # adds verbs here
        SetupMigrations,
        apply_migrations,
        migration_target,
    )
    from cruddur.ops import databases, loading
    from cruddur.ops.connections import database_db, server_db
    from cruddur.ops.migrations import runner
    from cruddur.ops.migrations.files import refuse_unrunnable

    # Until the drop (or the create): checking, asking, connecting to a silent host.
    if_interrupted("nothing was changed")
    # Every file checked before anything is dropped: an unfinished migration (`db new`
    # writes an empty one) would otherwise stop setup with the database empty.
    migrations = runner.load()
    if not if_missing:
        refuse_unrunnable(migrations, "up")  # on a new database, each of them runs
    settings = cli.settings
    # A MIGRATION_CONNECTION_URL that reaches another server is refused before anything is
    # dropped (apply_migrations checks again once the database is there). One that names
    # production makes this production's setup, though CONNECTION_URL reached it by
    # another address (a tunnel): the drop, the question and the roles' file are its.
    target, _ = migration_target(cli, quiet=True)
    name = target.dbname
    databases.refuse_system_database(name, "set up Cruddur in")
    # The roles' step may come (it does unless --if-missing finds production set up):
    # its file is checked now, before anything is dropped, made, migrated or seeded.
    check_env_file(settings, target)
    if not if_missing:
        cli.confirm(f'drop and recreate "{name}"', target)
    # What the database is left as, at each step from the drop on, for a Ctrl-C's line
    # (it said only "interrupted", though the database was dropped, or half built).
    unchanged = "nothing was changed"
    at: str | Callable[[], str] = unchanged
    step = SetupMigrations()
    seed_due = False  # a database found empty (or made), not seeded yet
    try:
        with server_db(target, settings.pool) as server:
            making = if_missing and not databases.exists(server, name)
            if not if_missing or making:
                _refuse_without_powers(server, target, name)
            if making:
                # Asked before the CREATE: asked after it, a "no" left production with
                # a new empty database, though the error said nothing was done.
                cli.confirm(f'create, migrate and seed "{name}"', target)
            if not if_missing:
                # What a developer means by "set it up again" while the API runs: locally,
                # its sessions go; on production, only when asked for.
                held = len(databases.other_sessions(server, name)) if not target.prod else 0
                if_interrupted(None)
                at = f'"{name}" may have been dropped'
                try:
                    dropped = databases.drop(server, name, force=force or not target.prod)
                except databases.DatabaseInUse as exc:
                    # Not drop's hint (`bin/db-drop --force`): that drops, and sets up nothing.
                    # Other roles' sessions this role may not end keep drop's (--force fails).
                    if not exc.kept:
                        exc.hint = (
                            "see them with `bin/db-sessions`; `bin/db-setup --force` "
                            "disconnects them"
                        )
                    raise
                at = f'"{name}" was dropped' if dropped else unchanged
                if dropped:
                    disconnected = f", disconnecting {held} session{'s' if held != 1 else ''}"
                    done(f'dropped database "{name}"' + (disconnected if held else ""))
            if_interrupted(None)
            was_dropped = at != unchanged
            created = databases.create(server, name)
        with database_db(target, settings.pool) as database:
            at = f'"{name}" was kept'
            if created:
                at = f'"{name}" was {"dropped and made again" if was_dropped else "made"}, empty'
                done(f'created database "{name}"')
                empty = True
            else:
                empty = loading.schema_tables(database) == 0
                if if_missing:
                    done(f'database "{name}" exists' + (", no schema" if empty else ""))
            seed_due = empty
            if if_missing and empty and not making:
                cli.confirm(f'migrate and seed "{name}"', target)
            migrating = at
            unseeded = ", not seeded" if empty else ""
            at = lambda: f"{migrating}, then {step.said()}{unseeded}"  # noqa: E731 - said when it stops
            applied = apply_migrations(cli, migrations, confirm=if_missing and not empty, step=step)
            if not applied and not empty:
                done("schema up to date")
            at = f'"{name}" has its schema' + (" but not the seed" if empty else "")
            if empty:
                _load(database, loading.SEED)
                seed_due = False
            else:
                seed = "`bin/db-seed prod`" if cli.prod else "`bin/db-seed`"
                info(f"not seeded: the database already had the schema ({seed} adds the seed)")
        if if_missing and not empty and target.prod:  # nothing asked covered the roles
            info("roles: `cruddur db roles --prod` makes them or checks them")
        else:
            at = f'"{name}" has its schema and seed, but its roles were not set up'
            set_up_roles(settings, target)  # a step of its own, after the migrations
    except KeyboardInterrupt:
        said = at() if callable(at) else at
        if said != unchanged:
            prod = " prod" if target.prod else ""
            again = f"`bin/db-setup{prod}{' --if-missing' if if_missing else ''}` again"
            if if_missing and seed_due:
                # Run again, it finds the schema there and seeds nothing.
                again += f", then `bin/db-seed{prod}`,"
            said += f"; run {again} to finish"
        warn(f"interrupted: {said}")
        raise click.exceptions.Exit(INTERRUPTED) from None
    done(f'database "{name}" is ready')


def _refuse_without_powers(server: Db, target: Target, name: str) -> None:
    """Before setup drops anything: the role must be able to create the database again
    and make the roles (the owner of a database may drop it without CREATEDB)."""
    from cruddur.ops import databases
    from cruddur.ops.roles import API_ROLE, LAMBDA_ROLE

    # The embedded server's roles get their kept passwords set each time.
    missing = databases.missing_powers(
        server, [API_ROLE, LAMBDA_ROLE], set_passwords=target.embedded
    )
    if missing:
        raise Problem(
            f'{missing}: nothing was done to "{name}"',
            "connect as a role that has it (on RDS, the master user), or have a superuser "
            "grant it (ALTER ROLE)",
        )


db.add_command(roles_command)


def _cruds_and_replies(counts: Any) -> str:
    """ "1 crud and 3 replies" (it said "1 cruds")."""
    cruds = f"{counts.cruds:,} crud{'' if counts.cruds == 1 else 's'}"
    return f"{cruds} and {counts.replies:,} repl{'y' if counts.replies == 1 else 'ies'}"


@db.command()
@prod_option
@pass_cli
def status(cli: Cli) -> None:
    """Say which database is in use, whether it answers, and what it holds."""
    from cruddur.ops.status import database_status, migrate_command
    from cruddur.targets import embedded_server

    settings = cli.settings
    env_file = env_file_read()
    if env_file is not None:  # which .env counted (bin/db-* read their checkout's)
        result(f"settings  {env_file} and the environment")
    if not cli.prod and not settings.connection_url:
        server = embedded_server(settings)
        state = server.status()
        where = f"binaries in {state.bin_dir}" if state.bin_dir else "no server binaries found"
        if not state.running:
            result(f"embedded  not running ({where}; data in {state.data_dir})")
            info("start it with `cruddur db up`, or set CONNECTION_URL")
            raise click.exceptions.Exit(1)
        result(f"embedded  running on 127.0.0.1:{state.port} ({where}; data in {state.data_dir})")
        if state.runs_from:
            warn(
                f"it still runs from {state.runs_from}, where this folder was before it "
                f"moved: its next checkpoint there fails. `{cruddur_command()} db down` stops "
                "it (as a crash), then `db up` starts it here"
            )
    target = cli.resolve(start=False)
    found = database_status(target, settings.pool)
    result(f"database  {target.describe()}")
    if not found.reachable:
        # Its hints name the scripts as any error's do: with `prod` for production.
        problem = for_prod(found.problem or "") if cli.prod else found.problem
        result(f"reachable no: {problem}")
        raise click.exceptions.Exit(1)
    result(f"reachable yes (PostgreSQL {found.server_version})")
    if found.schema_loaded and found.counts_problem:
        result(f"schema    loaded (rows not counted: {found.counts_problem})")
    elif found.schema_loaded:
        result(f"schema    loaded ({found.users} users, {found.activities} activities)")
    else:
        setup = "" if cli.prod else " or `bin/db-setup`"
        result(f"schema    not loaded (run `{migrate_command(target)}`{setup})")
    result(f"migrations {found.migrations}")
    result(f"uuids     uuid_generate_v4(): {found.uuid_generate_v4}")
    reader_url = settings.replica.reader_url
    if reader_url and not cli.prod:
        from cruddur.urls import check

        check("READER_CONNECTION_URL", reader_url)
        # Reached as any other server is: an RDS endpoint with verify-full TLS.
        reader = dataclasses.replace(target, url=reader_url).conninfo
        _replica_status(reader_url, reader, target.conninfo, settings)


def _replica_status(url: str, conninfo: str, primary_url: str, settings: Settings) -> None:
    from cruddur.api_urls import api_conninfo
    from cruddur.db.replication import lag_words
    from cruddur.ops.status import replica_status
    from cruddur.urls import redact

    # Connected as the API's watcher connects (its session settings, or none behind a
    # pooler): a PgBouncer that refuses them, CRUDDUR_POOLER unset, was "reads use it"
    # here while the API could not reach it.
    pooled = settings.replica.behind_pooler(conninfo)
    as_the_api = api_conninfo(conninfo, pooled, settings.api_timeouts)
    state = replica_status(as_the_api, primary_url, settings.pool.connect_timeout)
    result(f"reader    {redact(url)}")
    limit = settings.replica.max_lag
    if not state.reachable:
        result(f"replica   unreachable: {state.problem}; reads go to the primary")
    elif state.lag_seconds is None:
        # The API reads from a replica only while its lag is known and within the limit.
        result(f"replica   {state.problem}; reads go to the primary")
    elif state.lag_at_most and not state.fresh(limit):
        # One look: the age of its last replayed transaction (78 s of a replica 8 s
        # behind, after a quiet minute). A running API measures it; /api/health says.
        result(
            f"replica   at most {lag_words(state.lag_seconds, limit)}: the age of its last "
            "replayed transaction; a running API measures it (/api/health's lag_seconds)"
        )
    else:
        verdict = "reads use it" if state.fresh(limit) else "too far behind, reads use the primary"
        bound = "at most " if state.lag_at_most else ""
        result(f"replica   {bound}{lag_words(state.lag_seconds, limit)}: {verdict}")


@db.command()
@prod_option
@click.option(
    "--timeout",
    type=Seconds(),
    default=60,
    show_default=True,
    help="Seconds to wait before giving up.",
)
@pass_cli
def wait(cli: Cli, timeout: float) -> None:
    """Wait until the database accepts connections (for jobs started beside the server).

    Exits 0 as soon as it does, 1 after --timeout seconds, and at once for errors that
    waiting cannot fix (a wrong password, a missing database).
    """
    import psycopg
    from rich.text import Text

    from cruddur.cli.output import err
    from cruddur.ops import waiting

    connect_timeout = cli.settings.pool.connect_timeout
    started = time.monotonic()

    class SoFar:
        """The status line, drawn anew at each refresh of the spinner: it counts on while
        an attempt hangs (updated between attempts, it stood still for 5 s at a time)."""

        def __rich__(self) -> Text:
            seconds = min(time.monotonic() - started, timeout)  # the last try may run on
            return Text(f"waiting for the database … {seconds:.0f} s of {timeout:g}")

    try:
        # On a terminal, a line that says it is waiting, and how long so far.
        with err().status(SoFar()):
            took = waiting.wait_until_accepting(cli.target.conninfo, timeout, connect_timeout)
    except psycopg.OperationalError:
        waited_for = time.monotonic() - started
        if waited_for >= timeout:
            warn(f"gave up after {waited_for:.0f} s (--timeout {timeout:g})")
        raise
    done(f"the database accepts connections (waited {took:.1f} s)")


@db.command()
@pass_cli
def up(cli: Cli) -> None:
    """Start the embedded PostgreSQL (set up on first use)."""
    from cruddur.targets import embedded_server
    from cruddur.urls import redact

    settings = cli.settings
    if settings.connection_url:
        warn("CONNECTION_URL is set, so commands use that server, not this embedded one")
    server = embedded_server(settings)
    url = server.start()
    done(f"embedded PostgreSQL running: {redact(url)}")
    if server.moved_from is not None:
        warn(
            f"port {server.moved_from}, where it ran before, was taken: a `cruddur serve` "
            "started before still asks that port; restart it"
        )


@db.command()
@click.option(
    "--immediate",
    is_flag=True,
    help="Stop it at once, as a crash would (no shutdown checkpoint; the next start "
    "recovers from the WAL): for a server that does not stop on its own.",
)
@pass_cli
def down(cli: Cli, immediate: bool) -> None:
    """Stop the embedded PostgreSQL; its data stays under .cruddur/."""
    from cruddur.embedded import EmbeddedError
    from cruddur.errors import Problem
    from cruddur.targets import embedded_server

    server = embedded_server(cli.settings)
    try:
        stopped = server.stop("immediate" if immediate else "fast")
    except EmbeddedError as exc:
        if immediate or "does not shut down" not in exc.message:
            raise
        # pg_ctl gave up after 60 s: a long shutdown checkpoint (after a bulk load), or a
        # server that cannot run (stopped with kill -STOP). It said no more than that.
        raise Problem(
            f"{exc.message} within 60 s",
            f"it may still be writing its checkpoint: run `{cruddur_command()} db down` "
            f"again shortly, or `{cruddur_command()} db down --immediate` to stop it at "
            "once (the next start recovers from the WAL)",
        ) from None
    if stopped:
        done("embedded PostgreSQL stopped")
    elif not server.initialized:
        # Not "data kept in …" a folder that does not exist: the home may be misspelt.
        done(f"no embedded PostgreSQL in {server.home}: nothing to stop")
        return
    else:
        done("embedded PostgreSQL was not running")
    info(f"data kept in {server.data_dir}")
