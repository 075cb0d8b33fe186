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


@dataclass(frozen=True)
class OtherSession:  # a row of server/other_sessions.sql (and terminate_sessions.sql)
    pid: int
    may_end: bool  # may this role end it (pg_terminate_backend)
    superuser_s: bool  # its role is a superuser: only a superuser may end it


@dataclass(frozen=True)
class Ended(OtherSession):  # a row of server/terminate_sessions.sql
    ended: bool


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def who_may_end(kept: Sequence[OtherSession]) -> str:
    """Who may end the sessions this role may not: pg_signal_backend()'s rule, in words."""
    superusers = sum(session.superuser_s for session in kept)
    them, their = ("it", "its") if len(kept) == 1 else ("them", "their")
    if superusers == len(kept):
        return f"only a superuser may end {them} ({their} role is a superuser)"
    anyone = f"a superuser, or a member of pg_signal_backend or of {their} role, may end {them}"
    if superusers:
        return f"{anyone}; only a superuser may end the {superusers} of a superuser role"
    return anyone


class DatabaseInUse(Problem):
    """DROP DATABASE would fail: other sessions are connected."""

    hint = IN_USE_HINT

    def __init__(self, dbname: str, others: Sequence[OtherSession]) -> None:
        self.dbname = dbname
        self.sessions = len(others)
        self.kept = [session for session in others if not session.may_end]
        plural = _plural(self.sessions, "other session is", "other sessions are")
        super().__init__(f'{plural} connected to database "{dbname}"')
        if self.kept:  # --force would fail on them, and kill-all leave them
            of_others = _plural(len(self.kept), "is another role's", "are other roles'")
            self.hint = (
                f"see them with `bin/db-sessions`; {of_others}, which this role may not "
                f"end: {who_may_end(self.kept)}. `--force` (`bin/db-drop --force`) "
                "refuses until they are gone"
            )


class SessionsKept(Problem):
    """Sessions of other roles that this role may not end (kill-all, drop --force)."""

    def __init__(self, dbname: str, kept: Sequence[OtherSession], *, still: bool) -> None:
        self.kept = len(kept)
        sessions = _plural(self.kept, "session of another role is", "sessions of other roles are")
        them = "it" if self.kept == 1 else "them"
        super().__init__(
            f'{sessions}{" still" if still else ""} connected to database "{dbname}": '
            f"this role may not end {them}",
            f"{who_may_end(kept)}; `bin/db-sessions` lists them",
        )


@dataclass(frozen=True)
class Session:  # the columns of server/sessions.sql, by name
    process_id: int
    user: str | None
    db: str | None
    client_addr: str | None
    app: str | None
    state: str | None
    hidden: bool  # another role's: this role may not see its state or address


def refuse_system_database(dbname: str, verb: str) -> None:
    """Before a verb changes `dbname`: never a system database. What goes into template1
    goes into every database made after (the suite's, the next `db setup`'s); postgres is
    the server's maintenance database."""
    if dbname in SYSTEM_DATABASES:
        raise ConfigError(
            f'refusing to {verb} the system database "{dbname}"',
            "name Cruddur's own database in the URL (…/cruddur)",
        )


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


def other_sessions(server: Db, dbname: str) -> list[OtherSession]:
    """The sessions other than ours on the database, other roles' too (as far as visible)."""
    return server.query_rows(
        template("server", "other_sessions"),
        {"dbname": dbname},
        row_factory=class_row(OtherSession),
    )


def drop(server: Db, dbname: str, *, force: bool = False) -> bool:
    """Drop the database; False when there was none. Without `force`, refuse while in use."""
    refuse_system_database(dbname, "drop")
    if not exists(server, dbname):
        return False
    others = other_sessions(server, dbname)
    if not force and others:
        raise DatabaseInUse(dbname, others)
    kept = [session for session in others if not session.may_end]
    if kept:  # WITH (FORCE) would fail on them: "must be a superuser to terminate …"
        raise SessionsKept(dbname, kept, still=False)
    statement = sql.SQL("DROP DATABASE IF EXISTS {}{}").format(
        sql.Identifier(dbname), sql.SQL(" WITH (FORCE)") if force else sql.SQL("")
    )
    server.query_commit(statement)
    return True


def kill_all(server: Db, dbname: str) -> tuple[int, list[OtherSession]]:
    """Disconnect every other session from the database that this role may end: how many
    it ended, and the sessions (of other roles) it may not end."""
    refuse_system_database(dbname, "disconnect everyone from")
    rows = server.query_rows(
        template("server", "terminate_sessions"), {"dbname": dbname}, row_factory=class_row(Ended)
    )
    return sum(row.ended for row in rows), [row for row in rows if not row.may_end]


def sessions(server: Db) -> list[Session]:
    return server.query_rows(template("server", "sessions"), row_factory=class_row(Session))
