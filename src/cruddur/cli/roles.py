"""`cruddur db roles`, and the roles step of `db setup` and `cruddur serve`.

The API and the sign-up Lambda each log in as a role of their own (cruddur.ops.roles).
Their URLs are printed with the password as ***; new passwords go to a file only you
can read (for a server other than the embedded one, whose passwords stay in its state).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cruddur.cli.options import Cli, TargetCommand, pass_cli, prod_option, yes_option
from cruddur.cli.output import cruddur_command, done, info, result, warn
from cruddur.errors import Problem
from cruddur.ops.role_names import API_ROLE, LAMBDA_ROLE, role_name_problem
from cruddur.safe_paths import (
    UnsafePath,
    check_writable,
    private_folder,
    read_private,
    write_private,
)

# The functions import the ops they run (and with them psycopg) in their bodies: every db
# verb imports this module, and `--help` or a verb without roles need not load them.
if TYPE_CHECKING:
    from cruddur.config import Settings
    from cruddur.targets import Target

API_SETTING = "CRUDDUR_API_CONNECTION_URL"  # what `cruddur serve` reads
LAMBDA_SETTING = "CRUDDUR_LAMBDA_CONNECTION_URL"  # the Lambda's CONNECTION_URL


def default_env_file(settings: Settings, target: Target) -> Path:
    return settings.home / ("db-roles-prod.env" if target.prod else "db-roles.env")


def check_env_file(settings: Settings, target: Target, env_file: Path | None = None) -> None:
    """Whether the roles' URLs could be written where `set_up_roles` writes them (Problem
    if not); `db setup` asks before it drops anything. Only checked: a run that writes no
    URL leaves the file as it was (mode, bytes, inode). The embedded server keeps its
    roles' passwords in its own state."""
    if not target.embedded:
        path = env_file or default_env_file(settings, target)
        _merge_env_file(path, None, chosen=env_file is not None)


def set_up_roles(
    settings: Settings,
    target: Target,
    *,
    rotate: bool = False,
    env_file: Path | None = None,
    api: str = API_ROLE,
    lambda_: str = LAMBDA_ROLE,
) -> None:
    """Make the roles and grant them their privileges on the target database; say how
    to reach them."""
    from cruddur.ops import databases, roles
    from cruddur.ops.connections import database_db, server_db
    from cruddur.targets import embedded_server
    from cruddur.urls import as_url, redact, with_database, with_user

    databases.refuse_system_database(target.dbname, "grant Cruddur's roles on")
    passwords: dict[str, str] = {}
    unknown: set[str] = set()
    if target.embedded:
        # The embedded server keeps its roles' passwords in its state: a role it has none
        # for gets a new one, recorded once the role has it (recorded first, a role then
        # refused, --api-role postgres say, left a password in the state it never had).
        # Such a role must not exist already, unless --rotate: its own password changed.
        # Cruddur's own two names are its to set (the tests' roles on a checkout's
        # server, say: `bin/run` after `bin/test` stopped on them).
        embedded = embedded_server(settings)
        recorded = embedded.recorded_roles()
        for role in (api, lambda_):
            kept = role in recorded and not rotate
            passwords[role] = embedded.role_password(role) if kept else roles.new_password()
            if role not in recorded and not rotate and role not in (API_ROLE, LAMBDA_ROLE):
                unknown.add(role)
    path = env_file or default_env_file(settings, target)
    # Before any role changes: a file that cannot be written after them would lose the
    # new passwords, and the API's role keep one nobody knows.
    check_env_file(settings, target, env_file)
    fresh: dict[str, str] = {}

    def keep(ensured: list[roles.Ensured]) -> None:
        # Written as soon as the roles have them, before the grants: a grant that failed
        # left a new role with a password nobody had.
        # Those made yet: called after each role.
        for setting, role in zip((API_SETTING, LAMBDA_SETTING), ensured, strict=False):
            if role.password is not None:
                fresh[setting] = as_url(with_user(target.url, role.role, role.password))
        if target.embedded:
            for role in ensured:
                embedded.record_role_password(role.role, passwords[role.role])
        elif fresh:
            _merge_env_file(path, fresh, chosen=env_file is not None)

    with server_db(target, settings.pool) as server, database_db(target, settings.pool) as db:
        ensured = roles.set_up(
            server, db, passwords=passwords, rotate=rotate, api=api, lambda_=lambda_, keep=keep,
            api_timeouts=settings.api_timeouts.as_settings(), passwords_unknown=unknown,
        )  # fmt: skip
    # A role that was there already keeps its password: its URL for this database is the
    # file's, from the run that set it, moved to this database (the file named another
    # one, and the line printed here stood for a URL whose password was "unknown").
    moved: dict[str, str] = {}
    if not target.embedded:
        for setting, role in zip((API_SETTING, LAMBDA_SETTING), ensured, strict=True):
            known = None if role.password is not None else _known_url(path, setting, role.role)
            if known is not None and _same_server(known, target.url):
                moved[setting] = as_url(with_database(known, target.dbname))
        if moved:
            _merge_env_file(path, moved, chosen=env_file is not None)
    done(f'roles {api} and {lambda_}: their privileges granted on "{target.dbname}"')
    for setting, role in zip((API_SETTING, LAMBDA_SETTING), ensured, strict=True):
        if role.password is not None:
            result(f'{setting}="{redact(with_user(target.url, role.role, role.password))}"')
        elif setting in moved:
            result(f'{setting}="{redact(moved[setting])}"')
        if role.created:
            info(f"  {role.role}: made, with a generated password")
        elif role.password is None and setting in moved:
            info(f"  {role.role}: already there, password unchanged (its URL from {path})")
        elif role.password is None:
            info(
                f"  {role.role}: already there, its password not known here (not in {path}): "
                "--rotate sets a new one and writes its URL there (a role is the server's: "
                "every database whose API or Lambda logs in as it then needs that URL)"
            )
    if target.embedded:
        info(
            f"passwords kept in {embedded_server(settings).state_file}; "
            f"`{cruddur_command()} serve` uses them"
        )
    elif fresh or moved:
        info(f"the roles' URLs are in {path} (mode 0600); the API reads {API_SETTING}")
        info("  the Lambda takes its URL as CONNECTION_URL (or a secret with the same user)")


def grant_recorded_roles(settings: Settings, target: Target) -> bool:
    """A database just created on the embedded server: its application roles (made by
    `db setup`, their passwords in its state) may use it, and migrations grant them each
    table as they make it. A database dropped and made again by hand (drop, create,
    migrate, seed while `bin/run` served) left the API's role with no rights: a 500 on
    every read, and health said all was well. Whether they were given it."""
    from cruddur.ops import roles
    from cruddur.ops.connections import database_db, server_db
    from cruddur.targets import embedded_server

    if (
        not target.embedded
        or not {API_ROLE, LAMBDA_ROLE} <= embedded_server(settings).recorded_roles()
    ):
        return False
    with server_db(target, settings.pool) as server:
        there = server.query_value(
            "SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s)", [API_ROLE, LAMBDA_ROLE]
        )
    if there != 2:
        return False
    with database_db(target, settings.pool) as database:
        roles.grant(database)
    return True


def grant_again(settings: Settings, url: str) -> None:
    """After tables were made anew (schema-load, migrate, rollback): the application
    roles' privileges again, in a database they were given before."""
    from cruddur.db import Db
    from cruddur.ops import roles
    from cruddur.ops.connections import admin_pool

    with Db(url, admin_pool(settings.pool), application_name="cruddur-cli") as database:
        given = roles.given_here(database)
        # Each API role with each Lambda role (one of each, unless `db roles` was run with
        # other names too): granting one pair changes nothing of another's.
        for api, lambda_ in itertools.product(given["api"], given["lambda"]):
            roles.grant(database, api=api, lambda_=lambda_)
    if given["api"] and given["lambda"]:
        done(f"privileges granted again to {' and '.join(given['api'] + given['lambda'])}")
    elif given["api"] or given["lambda"]:
        # The grants name both roles: with one gone (dropped by hand), none were given,
        # and a table made anew was closed to the other (the API's requests failed).
        kept, gone = ("API", "Lambda") if given["api"] else ("Lambda", "API")
        warn(
            f"privileges not granted again: this database has the {kept}'s role "
            f"({', '.join(given['api'] or given['lambda'])}) but no {gone} role; "
            f"`{cruddur_command()} db roles` makes it and grants both"
        )


def _known_url(path: Path, setting: str, role: str) -> str | None:
    """The URL `setting` holds in the roles' file (a .env, read as python-dotenv reads
    one), if it is `role`'s; None otherwise."""
    import io

    from dotenv import dotenv_values

    try:
        text = read_private(path).decode()
    except (OSError, UnsafePath, UnicodeDecodeError):
        return None
    url = dotenv_values(stream=io.StringIO(text)).get(setting)
    return url if url and _user_of(url) == role else None


def _user_of(url: str) -> str | None:
    """The URL's user; None for one that cannot be read (a line edited by hand)."""
    from cruddur.config import ConfigError
    from cruddur.urls import parse

    try:
        return parse(url).get("user")
    except ConfigError:  # MalformedUrl
        return None


def _same_server(url: str, other: str) -> bool:
    from cruddur.urls import parse

    mine, theirs = parse(url), parse(other)
    return all(mine.get(part) == theirs.get(part) for part in ("host", "port", "hostaddr"))


def _merge_env_file(path: Path, values: dict[str, str] | None, *, chosen: bool = True) -> None:
    """`values` into the file at `path` (None: only whether it could be); `chosen`: the
    user named it (--env-file)."""
    hint = (
        "give --env-file a file you can write"
        if chosen
        else "set CRUDDUR_HOME to a folder you can write (`db roles` also takes --env-file)"
    )
    try:
        private_folder(path.parent, 0o755)
        if values is None:
            check_writable(path)
            return
        try:
            lines = read_private(path).decode().splitlines()
        except FileNotFoundError:
            lines = ["# cruddur db roles: the application roles' connection URLs (secret)"]
        # A setting given again is replaced; one that held another role's URL, whose
        # password is known nowhere else, is kept commented out (a run naming other
        # roles overwrote it, and the first roles' passwords were lost).
        aside = [line for line in lines if _another_roles(line, values)]
        for line in aside:
            warn(f"{line.partition('=')[0]} in {path} named another role: kept, commented out")
        lines = [
            f"# replaced by `db roles`: {line}" if line in aside else line
            for line in lines
            if line.partition("=")[0].strip() not in values or line in aside
        ]
        lines += [f"{name}='{value}'" for name, value in values.items()]
        write_private(path, ("\n".join(lines) + "\n").encode())
    except OSError as exc:
        raise Problem(f"cannot write {path}: {exc.strerror or exc}", hint) from None
    except UnsafePath as exc:  # its folder could not be made, or is not safe to use
        raise Problem(str(exc), hint) from None


def _another_roles(line: str, values: dict[str, str]) -> bool:
    """Whether `line` of the roles' file sets one of `values` to another role's URL (or to
    one that cannot be read: edited by hand)."""
    import io

    from dotenv import dotenv_values

    name = line.partition("=")[0].strip()
    if name not in values:
        return False
    old = dotenv_values(stream=io.StringIO(line)).get(name)
    return bool(old) and (_user_of(old) is None or _user_of(old) != _user_of(values[name]))


def _role_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refused while parsing, before the target is resolved or anything asked."""
    problem = role_name_problem(value)
    if problem:
        raise click.BadParameter(problem, ctx, param)
    return value


@click.command("roles", cls=TargetCommand)
@prod_option
@yes_option
@click.option("--rotate", is_flag=True, help="Give roles that exist already new passwords too.")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where new passwords' URLs go (mode 0600) "
    "[default: .cruddur/db-roles.env, db-roles-prod.env with --prod]; not for the "
    "embedded server, which keeps them in its state.",
)
@click.option(
    "--api-role",
    default=API_ROLE,
    show_default=True,
    callback=_role_name,
    help="The API's role (63 bytes at most).",
)
@click.option(
    "--lambda-role",
    default=LAMBDA_ROLE,
    show_default=True,
    callback=_role_name,
    help="The Lambda's role (63 bytes at most).",
)
@pass_cli
def roles_command(
    cli: Cli, rotate: bool, env_file: Path | None, api_role: str, lambda_role: str
) -> None:
    """Make the API's and the Lambda's database roles and grant them what they may do.

    The API's role may read, insert and update rows, and delete expired Idempotency-Keys;
    the Lambda's may insert and read users. Neither can change the schema, delete
    anything else or run programs on the server.
    Migrations and the `db` verbs keep using the URL's own user (the owner). Run it
    again at any time: it changes no password unless --rotate.
    """
    if env_file is not None and (
        env_file.is_symlink() or (env_file.exists() and not env_file.is_file())
    ):
        # Not state of ours to "remove" (/dev/stdout, /dev/null): the URLs go to a file.
        # (An empty value is click's "." , a folder: it said "a link, a device or a pipe".)
        kind = (
            "a folder"
            if env_file.is_dir() and not env_file.is_symlink()
            else ("a link, a device or a pipe")
        )
        raise click.BadParameter(
            f"{env_file} is {kind}: give the path of a file", param_hint="--env-file"
        )
    if api_role == lambda_role:  # one role would get both sets of grants
        raise click.BadParameter(
            f'the API and the Lambda need two roles, not one: both are named "{api_role}"',
            param_hint="--api-role and --lambda-role",
        )
    target = cli.target
    if env_file is not None and target.embedded:
        # Taken and ignored, it promised a file that was never written.
        raise click.BadParameter(
            "the embedded server keeps its roles' passwords in its own state, which "
            "`cruddur serve` reads: no file is written for it",
            param_hint="--env-file",
        )
    action = f'make roles {api_role} and {lambda_role} and grant them rows of "{target.dbname}"'
    cli.confirm(action + (", with new passwords" if rotate else ""))
    set_up_roles(
        cli.settings, target, rotate=rotate, env_file=env_file, api=api_role, lambda_=lambda_role
    )
