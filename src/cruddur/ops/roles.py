"""The application's database roles: the API's and the sign-up Lambda's.

The owner (the URL's user: the embedded superuser, RDS's master user) runs migrations
and the `db` verbs. The API logs in as `cruddur_api`, which may read cruds and users'
public columns, add a crud and raise a parent's replies_count, and nothing else; the
Lambda as `cruddur_lambda`, which may only insert and read users (db/sql/roles/grant.sql,
column by column). Neither is a superuser or belongs to any role, so there is nothing for
`SET ROLE` or `RESET ROLE` to reach.

Two steps, each idempotent: `ensure` makes a role (server-wide) with a password, and
`grant` gives the roles their privileges in one database. `grant` runs after every
schema load, and in each migration's own transaction (`grant_in`): a table a migration
makes anew is theirs as it commits; a table grant.sql does not name is no one's.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import psycopg
from psycopg import Connection, sql

from cruddur.config import ApiTimeouts
from cruddur.db import Db, run_script, template
from cruddur.db.scripts import ScriptError, error_line, split
from cruddur.errors import Problem
from cruddur.ops.role_names import API_ROLE as API_ROLE
from cruddur.ops.role_names import LAMBDA_ROLE as LAMBDA_ROLE
from cruddur.ops.role_names import role_name_problem

# The comment `db roles` leaves on each role (COMMENT ON ROLE): after a schema load or a
# migration, the roles are granted their privileges again by it, whatever their names.
ROLE_MARKS = {
    "api": "Cruddur API role: reads, inserts and updates rows (cruddur db roles)",
    "lambda": "Cruddur sign-up Lambda role: inserts and reads users (cruddur db roles)",
}
# Serialises role changes from several processes (test workers, two terminals): ALTER
# ROLE from two sessions at once fails with "tuple concurrently updated".
_LOCK_KEY = "cruddur roles"


class UnsafeRole(Problem):
    """A role with this name exists with more power than an application role may have."""


@dataclass(frozen=True)
class Ensured:
    role: str
    created: bool
    # The password set now; None when the role kept its own. Not in the repr: a
    # traceback or a debug line shows no secret.
    password: str | None = field(repr=False)


def new_password() -> str:
    return secrets.token_urlsafe(24)  # URL-safe: no quoting needed in a connection URL


def _check_powers(conn: Connection, role: str) -> None:
    row = conn.execute(template("roles", "role_facts"), {"role": role}).fetchone()
    superuser, createdb, createrole, replication, bypassrls, login, member_of = row
    powers = [
        name
        for name, has in (
            ("SUPERUSER", superuser),
            ("CREATEDB", createdb),
            ("CREATEROLE", createrole),
            ("REPLICATION", replication),
            ("BYPASSRLS", bypassrls),
        )
        if has
    ]
    powers += [f"member of {group}" for group in member_of]
    if conn.info.server_version >= 150000:  # grants on settings came in 15
        rows = conn.execute(template("roles", "role_parameters"), {"role": role}).fetchall()
        powers += [
            f"a grant on the setting {name}" + (" (to PUBLIC)" if public else "")
            for name, public in rows
        ]
    if powers:
        raise UnsafeRole(
            f'role "{role}" exists with {", ".join(powers)}: an application role must have '
            "none; drop it or pick another name"
        )
    if not login:
        raise UnsafeRole(f'role "{role}" exists but cannot log in (NOLOGIN)')


def check_not_owner(database: Db, role: str) -> None:
    """Refuse `role` if it owns what is in `database`, or may create there: as the
    database's owner (the master user's own database on RDS, say), an application role
    could drop the tables it was given rows of."""
    found = database.query_value(template("roles", "role_owns"), {"role": role})
    if found:
        dbname = database.query_value("SELECT current_database()")
        raise UnsafeRole(
            f'role "{role}" {", ".join(found)} in "{dbname}": an application role may own '
            "nothing there and create nothing; name another role"
        )


def ensure(server: Db, role: str, password: str | None = None, *, rotate: bool = False) -> Ensured:
    """Make `role` (LOGIN, no other power) if missing. Its password: `password` when given
    (always set), else a new one when the role is made or `rotate`; else left alone."""
    if problem := role_name_problem(role):
        raise Problem(problem)
    with server.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_LOCK_KEY])
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        if exists:
            # Before its password changes: --api-role naming the master user, say, must
            # leave it as it was, not refuse it once its password is one nobody kept.
            _check_powers(conn, role)
        if password is None and (rotate or not exists):
            password = new_password()
        name = sql.Identifier(role)
        verifier = None
        if password is not None:
            # Hashed here (SCRAM, as libpq does for \password): the server, and a log of
            # its statements, never sees the password itself.
            verifier = conn.pgconn.encrypt_password(
                password.encode(), role.encode(), b"scram-sha-256"
            )
        if not exists:
            statement = sql.SQL(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}"
            ).format(name, sql.Literal(verifier.decode()))
            conn.execute(statement)
        elif verifier is not None:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(name, sql.Literal(verifier.decode()))
            )
    return Ensured(role, created=not exists, password=password)


def bound(server: Db, role: str, settings: dict[str, str]) -> bool:
    """The API role's lock and statement timeouts as its own defaults (ALTER ROLE … SET):
    every session it opens starts with them, those a transaction pooler (PgBouncer, RDS
    Proxy) opens too, where the API cannot send them at connect. False when this user may
    not alter the role (the API still sends them itself on a direct connection)."""
    try:
        with server.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_LOCK_KEY])
            for name, value in settings.items():
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        sql.Identifier(role), sql.Identifier(name), sql.Literal(value)
                    )
                )
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def grant(database: Db, *, api: str = API_ROLE, lambda_: str = LAMBDA_ROLE) -> int:
    """Give the roles their privileges in this database (as its owner); the statement count."""
    dbname = database.query_value("SELECT current_database()")
    return run_script(database, _grant_script(dbname, api, lambda_), "roles/grant.sql")


def grant_in(conn: psycopg.Connection, given: dict[str, list[str]]) -> None:
    """`grant` for every pair of the roles `given_here` found, on `conn`, inside its
    transaction (a migration's: a table it makes anew is theirs as it commits)."""
    dbname = conn.execute("SELECT current_database()").fetchone()[0]
    for api, lambda_ in itertools.product(given["api"], given["lambda"]):
        for statement in split(_grant_script(dbname, api, lambda_)):
            try:
                conn.execute(statement.text, prepare=False)
            except psycopg.Error as exc:
                line = error_line(statement, exc)
                raise ScriptError("roles/grant.sql", statement, line, exc) from exc


def _grant_script(dbname: str, api: str, lambda_: str) -> str:
    return (
        sql.SQL(template("roles", "grant"))
        .format(
            database=sql.Identifier(dbname),
            api=sql.Identifier(api),
            api_name=sql.Literal(api),
            lambda_name=sql.Literal(lambda_),
            **{"lambda": sql.Identifier(lambda_)},
        )
        .as_string(None)
    )


def can_change_schema(db: Db) -> bool:
    """Whether `db`'s user could change the schema: too much for an application role."""
    return bool(db.query_value(template("roles", "session_can_change_schema")))


def mark(server: Db, role: str, kind: str) -> bool:
    """Leave on `role` the comment that says it is Cruddur's `kind` ("api" or "lambda")
    role, so that `given_here` finds it whatever its name. False when this user may not
    comment on roles (the default names are still found)."""
    statement = sql.SQL("COMMENT ON ROLE {} IS {}").format(
        sql.Identifier(role), sql.Literal(ROLE_MARKS[kind])
    )
    try:
        with server.connection() as conn:
            conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def given_here(db: Db) -> dict[str, list[str]]:
    """The application roles given this database before, by kind ("api", "lambda"):
    those to grant again after a schema load or migration. Empty lists where the roles
    step never ran here (a migrate there must not open the database to them)."""
    rows = db.query_rows(
        template("roles", "given_here"),
        {
            "api": API_ROLE,
            "lambda": LAMBDA_ROLE,
            "api_mark": ROLE_MARKS["api"],
            "lambda_mark": ROLE_MARKS["lambda"],
        },
    )
    given: dict[str, list[str]] = {"api": [], "lambda": []}
    for role, kind in rows:
        given[kind].append(role)
    return given


def set_up(
    server: Db,
    database: Db,
    *,
    passwords: dict[str, str] | None = None,
    rotate: bool = False,
    api: str = API_ROLE,
    lambda_: str = LAMBDA_ROLE,
    keep: Callable[[list[Ensured]], None] | None = None,
    api_timeouts: dict[str, str] | None = None,
    passwords_unknown: Collection[str] = (),
) -> list[Ensured]:
    """The roles step of `db setup` and `db roles`: make both roles (with `passwords`
    where given), handing those made so far to `keep` after each (each is committed as it
    is made: the other role refused, or a grant failing, must not lose its password),
    then grant them their privileges in `database`, and give the API role
    `api_timeouts` (`bound`; the defaults' when not given). A role of
    `passwords_unknown` that exists already is refused: its password in `passwords` is
    a new one, and setting it would break whatever logs in with the old."""
    passwords = passwords or {}
    for role in (api, lambda_):  # before any password changes, as ensure's own checks
        if problem := role_name_problem(role):
            raise Problem(problem)
        check_not_owner(database, role)
    # Both roles' powers before either is made or given a password: the Lambda's refused
    # only once the API's password had been rotated left a URL in use broken.
    with server.connection() as conn:
        for role in (api, lambda_):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                _check_powers(conn, role)
                if role in passwords_unknown:
                    raise UnsafeRole(
                        f'role "{role}" exists, and its password is not known here: '
                        "`cruddur db roles --rotate` gives it a new one (whatever logs in "
                        "with the old one then fails), or name another role"
                    )
    ensured: list[Ensured] = []
    for role in (api, lambda_):
        ensured.append(ensure(server, role, passwords.get(role), rotate=rotate))
        if keep is not None:
            keep(ensured)
    mark(server, api, "api")
    mark(server, lambda_, "lambda")
    bound(server, api, api_timeouts or ApiTimeouts().as_settings())
    grant(database, api=api, lambda_=lambda_)
    return ensured
