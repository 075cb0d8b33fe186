"""What every command shares: the settings and the target database, worked out once per
command (a click context object), and the --prod and --yes options that choose them.

    @db.command()
    @prod_option
    @yes_option
    @pass_cli
    def drop(cli: Cli) -> None:
        cli.confirm("DROP DATABASE")        # asks on production, unless --yes
        with server_db(cli.target, cli.settings.pool) as server: …
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import click

from cruddur.cli.output import confirm_typed, info
from cruddur.config import Settings
from cruddur.targets import Target, resolve


@dataclass
class Cli:
    """One command's context: its options' choices, and what follows from them."""

    prod: bool = False  # --prod: PROD_CONNECTION_URL instead of CONNECTION_URL
    yes: bool = False  # --yes: no typed confirmation on production

    @cached_property
    def settings(self) -> Settings:
        """The environment's settings, read on first use (a command that needs none of
        them runs even when one is malformed)."""
        return Settings.from_env()

    @cached_property
    def target(self) -> Target:
        """The database this command acts on (the embedded server started if it is the
        one), named on stderr once."""
        target = self.resolve()
        info(f"database: {target.describe()}")
        return target

    def resolve(self, *, start: bool = True) -> Target:
        """The target without naming it; `start=False` leaves the embedded server as it is."""
        return resolve(self.settings, prod=self.prod, start=start)

    def confirm(self, action: str, target: Target | None = None) -> None:
        """On production, make the user type the database name first (or pass --yes)."""
        target = target or self.target
        if not target.prod or self.yes:
            return
        confirm_typed(
            target.dbname,
            "the database name",
            f"{action} on PRODUCTION: {target.describe()}",
        )


pass_cli = click.make_pass_decorator(Cli, ensure=True)


def _setter(name: str) -> Any:
    def store(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        setattr(ctx.ensure_object(Cli), name, value)
        return value

    return store


prod_option = click.option(
    "--prod",
    is_flag=True,
    expose_value=False,
    callback=_setter("prod"),
    help="Act on PROD_CONNECTION_URL instead of CONNECTION_URL.",
)
yes_option = click.option(
    "--yes",
    "-y",
    is_flag=True,
    expose_value=False,
    callback=_setter("yes"),
    help="On production, skip typing the database name to confirm.",
)
