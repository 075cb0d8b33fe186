"""`cruddur dev …`: helpers for local development."""

from __future__ import annotations

import click

from cruddur.cli.options import Cli, pass_cli
from cruddur.cli.output import result, warn
from cruddur.errors import Problem


@click.group()
def dev() -> None:
    """Local development helpers."""


@dev.command()
@click.option("--handle", help="Sign in as this user (their cognito_user_id becomes `sub`).")
@click.option("--sub", help="Use this `sub` as is (e.g. for a user with no row).")
@click.option(
    "--expires-in",
    type=click.IntRange(1, 24 * 3600),
    default=3600,
    show_default=True,
    help="Seconds the token is valid.",
)
@pass_cli
def token(cli: Cli, handle: str | None, sub: str | None, expires_in: int) -> None:
    """Print an access token signed by the local development key pair.

    A service without Cognito settings (or with CRUDDUR_AUTH=dev), listening on a
    loopback address, accepts it from this machine, checked by the same code that checks
    Cognito's tokens. From the checkout, with the API on its default port:

    \b
    TOKEN=$(.venv/bin/cruddur dev token --handle andrewbrown)
    curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
         -d '{"message": "hello", "ttl": "1-day"}' localhost:4567/api/activities
    """
    # Here, not at the top: `cruddur dev --help` needs neither PyJWT nor psycopg.
    from cruddur.dev_keys import DevKeys
    from cruddur.ops.connections import database_db
    from cruddur.services.users import subject_for_handle
    from cruddur.targets import api_only

    for name, given in (("--handle", handle), ("--sub", sub)):
        if given is not None and not given.strip():
            raise click.UsageError(f"{name} is empty: give a user's {name[2:]}")
    if bool(handle) == bool(sub):
        raise click.UsageError("give exactly one of --handle or --sub")
    settings = cli.settings
    if not settings.auth.dev:
        warn(
            "Cognito settings are set: a service with these settings checks Cognito's "
            "tokens and will refuse this one (CRUDDUR_AUTH=dev asks for the dev key pair)"
        )
    if handle:
        # The database `serve` would serve: the API role's alone, if that is all there is.
        with database_db(api_only(settings) or cli.resolve(), settings.pool) as db:
            found = subject_for_handle(db, handle)
        if found is None:
            raise Problem(
                f"no user has the handle {handle!r} in the local database",
                "`bin/db-seed` adds the sample users (andrewbrown, …)",
            )
        sub, handle = found  # in any case given; the token names it as stored
    result(DevKeys(settings.home).mint(settings.auth, sub, username=handle, expires_in=expires_in))
