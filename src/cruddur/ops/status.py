"""What `cruddur db status` reports: which database, whether it answers, what is in it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import psycopg
from psycopg.rows import class_row
from psycopg_pool import PoolTimeout

from cruddur import connecting
from cruddur.config import PoolSettings
from cruddur.db import Db, template
from cruddur.db.dead_peer import with_cli_bounds
from cruddur.db.errors import RDS_REACH_HINT, explain, problem_line
from cruddur.db.replication import (
    LagClock,
    ReplicaState,
    compared_with,
    look_at_replica,
    primary_sample,
)
from cruddur.ops.connections import database_db
from cruddur.ops.loading import SCHEMA_TABLES, schema_tables
from cruddur.ops.migrations import runner
from cruddur.ops.migrations.files import MigrationFileError
from cruddur.targets import Target
from cruddur.urls import looks_like_rds


@dataclass(frozen=True)
class DatabaseStatus:
    reachable: bool
    problem: str | None = None  # why not, with the fix
    server_version: str | None = None
    schema_loaded: bool = False
    uuid_generate_v4: str | None = None
    users: int | None = None
    activities: int | None = None
    migrations: str | None = None  # applied and pending, or why not known
    counts_problem: str | None = None  # why users and activities were not counted


@dataclass(frozen=True)
class _Facts:  # database/facts.sql
    dbname: str
    server_version: str
    uuid_generate_v4: str


@dataclass(frozen=True)
class _RowCounts:  # database/row_counts.sql, asked only once the schema is there
    users: int
    activities: int


def _status(db: Db, migrate: str) -> DatabaseStatus:
    schema_loaded = schema_tables(db) == SCHEMA_TABLES
    facts = db.query_row(template("database", "facts"), row_factory=class_row(_Facts))
    assert facts is not None  # one row, always
    counts, counts_problem = None, None
    if schema_loaded:
        try:
            counts = db.query_row(
                template("database", "row_counts"), row_factory=class_row(_RowCounts)
            )
        except psycopg.OperationalError:
            raise  # the connection went: unreachable after all
        except psycopg.DatabaseError as exc:  # a role that may not read them (the Lambda's)
            counts_problem = _answered(exc)
    with db.connection() as conn:
        migrations = _migrations(conn, migrate)
    return DatabaseStatus(
        reachable=True,
        server_version=facts.server_version,
        schema_loaded=schema_loaded,
        uuid_generate_v4=facts.uuid_generate_v4,
        users=counts.users if counts else None,
        activities=counts.activities if counts else None,
        migrations=migrations,
        counts_problem=counts_problem,
    )


def _migrations(conn: psycopg.Connection, migrate: str) -> str:
    unfinished: list[str] = []  # said, not a reason to know nothing: a `db new` file
    try:
        migrations = runner.load(unfinished=unfinished)
        current = runner.plan(conn, migrations)
    except (MigrationFileError, runner.MigrationError) as exc:
        return f"unknown: {exc}"
    except psycopg.OperationalError:
        raise  # the connection went: unreachable after all
    except psycopg.DatabaseError as exc:  # the server answered (permission denied …)
        return f"unknown: {_answered(exc)}"
    if current.adopt:
        return f"none recorded: a schema-load database (`{migrate}` adopts it)"
    summary = f"{len(current.applied)} applied, {len(current.pending) + len(unfinished)} pending"
    if current.edited:
        summary += f", {len(current.edited)} edited since applied"
    # What `db migrations --exit-code` fails a deploy on is said here too.
    if current.missing:
        summary += f", {len(current.missing)} applied with no file here"
    if current.invalid_indexes:
        summary += f", {len(current.invalid_indexes)} INVALID index(es)"
    if unfinished:
        summary += f", {len(unfinished)} unfinished ({', '.join(unfinished)}: no up statement)"
    if current.edited or current.invalid_indexes or unfinished:
        # `db migrate` refuses until these are dealt with: "applies them" was not so.
        listing = migrate.replace("db-migrate", "db-migrations")
        summary += f" (`{listing}` says what stops `{migrate}`)"
    elif current.pending:
        summary += f" (`{migrate}` applies them)"
    return summary


def migrate_command(target: Target) -> str:
    """The script that migrates this target: `prod` when it came from PROD_CONNECTION_URL
    (without it, bin/db-migrate acts on CONNECTION_URL's database)."""
    return "bin/db-migrate prod" if target.source == "PROD_CONNECTION_URL" else "bin/db-migrate"


def _answered(exc: psycopg.Error) -> str:
    """A server's refusal as one line, for a status that goes on."""
    explained = explain(exc)
    return explained.message if explained else str(exc).splitlines()[0]


def database_status(target: Target, settings: PoolSettings) -> DatabaseStatus:
    try:
        with database_db(target, settings) as db:
            return _status(db, migrate_command(target))
    except (psycopg.Error, PoolTimeout) as exc:
        explained = explain(exc)
        if explained is None:
            problem = str(exc).splitlines()[0]
        else:
            # The usual hint sends people to `cruddur db status`, where they already are.
            hint = _unreachable_hint(target) if explained.kind == "unreachable" else explained.hint
            problem = "; ".join(filter(None, [explained.message, hint]))
        return DatabaseStatus(reachable=False, problem=problem)


def _unreachable_hint(target: Target) -> str:
    """What to check when the target's server does not answer, for the setting it came from."""
    if target.embedded:  # running, said its state file, yet it refuses
        return (
            "the embedded server is not accepting connections (starting or stopping?): try "
            "again, or restart it with `cruddur db down` and `cruddur db up`"
        )
    if target.source == "CONNECTION_URL":
        hint = (
            "is the server running? Start it, or check CONNECTION_URL's host and port "
            "(without CONNECTION_URL, commands use the embedded server: `cruddur db up`)"
        )
    else:
        hint = f"is the server running? Check {target.source}'s host and port"
    return f"{hint}. {RDS_REACH_HINT}" if target.prod or looks_like_rds(target.url) else hint


LAG_UNKNOWN = (
    "behind the primary, and it has replayed no transaction since it started: how far "
    "behind is not known"
)


def replica_status(url: str, primary_url: str, connect_timeout: int) -> ReplicaState:
    """One look at READER_CONNECTION_URL's server: caught up (lag 0) when it has replayed
    all the primary has written, else the age of its last replayed transaction (not known
    when it has replayed none since it started); not following the primary when it holds
    WAL the primary has not written or is another cluster's. Without the primary, its own
    estimate."""
    try:
        with connecting.connect(
            with_cli_bounds(url), autocommit=True, connect_timeout=connect_timeout
        ) as conn:
            state = look_at_replica(conn)
    except psycopg.Error as exc:
        return ReplicaState(False, problem=problem_line(exc))
    try:
        with connecting.connect(
            with_cli_bounds(primary_url), connect_timeout=connect_timeout
        ) as primary:
            sampled = primary_sample(
                primary.execute(template("replication", "primary_state")).fetchone()
            )
    except psycopg.Error:
        return state
    if state.replayed is None or sampled is None:
        return state
    position = sampled.written
    # Sampled after the look, as not_following needs: one holding WAL past this is not
    # following this primary (it said "0.0 s behind: reads use it" of a replica holding a
    # history the restored primary no longer has).
    state = compared_with(state, sampled)
    if state.following is False:
        return state
    # As the API's watcher reads it on its first look (api/reads.py): caught up when it has
    # replayed all the primary has written; behind it, as old as its last replayed
    # transaction. Its own estimate is 0 s whenever it has replayed all it received,
    # which is what a replica cut off from its primary has done.
    now = time.monotonic()
    clock = LagClock()
    clock.primary_at(now, position)
    lag = clock.lag(now, state.replayed, state.replay_age)
    if lag is None or lag == math.inf:
        return replace(state, lag_seconds=None, problem=LAG_UNKNOWN)
    return replace(state, lag_seconds=lag, problem=None, lag_at_most=state.replayed < position)
