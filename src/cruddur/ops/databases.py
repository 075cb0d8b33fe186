"""Create, drop and inspect databases, over an open server-level (autocommit) Db."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import errors, sql
from psycopg.rows import class_row

from cruddur.config import ConfigError
from cruddur.db import Db, template
from cruddur.db.errors import IN_USE_HINT
from cruddur.errors import Problem

# Databases every server has; the admin verbs never drop them or empty them of sessions.
SYSTEM_DATABASES = frozenset({"postgres", "template0", "template1", "rdsadmin"})


class DatabaseInUse(Problem):
    """DROP DATABASE would fail: other sessions are connected."""

    hint = IN_USE_HINT

    def __init__(self, dbname: str, sessions: int) -> None:
        self.dbname = dbname
        self.sessions = sessions
        plural = "session is" if sessions == 1 else "sessions are"
        super().__init__(f'{sessions} other {plural} connected to database "{dbname}"')


@dataclass(frozen=True)
class Session:  # the columns of server/sessions.sql, by name
    process_id: int
    user: str | None
    db: str | None
    client_addr: str | None
    app: str | None
    state: str | None


def _refuse_system_database(dbname: str, verb: str) -> None:
    if dbname in SYSTEM_DATABASES:
        raise ConfigError(f'refusing to {verb} the system database "{dbname}"')


def exists(server: Db, dbname: str) -> bool:
    return bool(server.query_value(template("server", "database_exists"), {"dbname": dbname}))


def create(server: Db, dbname: str) -> bool:
    """Create the database; False when it was already there."""
    if exists(server, dbname):
        return False
    try:
        server.query_commit(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except (errors.DuplicateDatabase, errors.UniqueViolation):
        # Someone else made it since we looked: DuplicateDatabase if they had committed
        # when ours began, a unique violation on pg_database's name if they had not.
        if exists(server, dbname):
            return False
        raise
    return True


def missing_powers(server: Db, roles: Sequence[str], *, set_passwords: bool = False) -> str | None:
    """What the session's role lacks to create a database and make `roles` (those not
    there yet; every one of them when `set_passwords`), said in one phrase; None when
    nothing. `db setup` asks before it drops: a drop it cannot undo must not happen."""
    role, createdb, createrole, missing = server.query_rows(
        template("server", "session_powers"), {"roles": list(roles)}
    )[0]
    needs = [] if createdb else ["CREATEDB (to create the database)"]
    to_change = list(roles) if set_passwords else missing
    if to_change and not createrole:
        what = "set the passwords of" if set_passwords else "make"
        needs.append(f"CREATEROLE (to {what} {', '.join(to_change)})")
    return f'role "{role}" lacks {" and ".join(needs)}' if needs else None


def other_sessions(server: Db, dbname: str) -> int:
    return int(server.query_value(template("server", "other_sessions"), {"dbname": dbname}))


def drop(server: Db, dbname: str, *, force: bool = False) -> bool:
    """Drop the database; False when there was none. Without `force`, refuse while in use."""
    _refuse_system_database(dbname, "drop")
    if not exists(server, dbname):
        return False
    if not force:
        count = other_sessions(server, dbname)
        if count:
            raise DatabaseInUse(dbname, count)
    statement = sql.SQL("DROP DATABASE IF EXISTS {}{}").format(
        sql.Identifier(dbname), sql.SQL(" WITH (FORCE)") if force else sql.SQL("")
    )
    server.query_commit(statement)
    return True


def kill_all(server: Db, dbname: str) -> int:
    """Disconnect every other session from the database; return how many."""
    _refuse_system_database(dbname, "disconnect everyone from")
    return len(server.query_rows(template("server", "terminate_sessions"), {"dbname": dbname}))


def sessions(server: Db) -> list[Session]:
    return server.query_rows(template("server", "sessions"), row_factory=class_row(Session))
