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

import math
import os
import re
import shlex
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cruddur.cli.output import confirm_typed, info, warn

if TYPE_CHECKING:
    from cruddur.config import Settings
    from cruddur.targets import Target


@dataclass
class Cli:
    """One command's context: its options' choices, and what follows from them."""

    prod: bool = False  # --prod: PROD_CONNECTION_URL instead of CONNECTION_URL
    yes: bool = False  # --yes: no typed confirmation on production

    @cached_property
    def settings(self) -> Settings:
        """The environment's settings, read on first use (a command that needs none of
        them runs even when one is malformed)."""
        from cruddur.config import Settings  # on use: --help reads no settings

        return Settings.from_env()

    @cached_property
    def home(self) -> Path:
        """CRUDDUR_HOME alone (Settings.home without reading any other setting)."""
        from cruddur.config import home_from_env

        return home_from_env(os.environ)

    @cached_property
    def target(self) -> Target:
        """The database this command acts on (the embedded server started if it is the
        one), named on stderr once."""
        target = self.resolve()
        env_file = env_file_read()
        if env_file is not None:  # run from another folder, which .env counted says
            info(f"settings: {env_file} and the environment")
        info(f"database: {target.describe()}")
        return target

    def resolve(self, *, start: bool = True) -> Target:
        """The target without naming it; `start=False` leaves the embedded server as it is.
        Starting it says so: it outlives the command (`dev token` before `bin/run` left a
        server running without a word)."""
        from cruddur.cli.output import cruddur_command
        from cruddur.targets import embedded_server, resolve  # on use: they load psycopg

        settings = self.settings
        embedded = start and not self.prod and not settings.connection_url
        was_running = embedded and embedded_server(settings).running()
        target = resolve(settings, prod=self.prod, start=start)
        if embedded and not was_running:
            info(
                "started the embedded PostgreSQL; it keeps running after this command "
                f"(`{cruddur_command()} db down` stops it)"
            )
        warn_if_moved(target)
        return target

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


KEPT_META = "cruddur.kept_if_interrupted"


def warn_if_moved(target: Target) -> None:
    """Said by every command whose start moved the embedded server to another port
    (only `db up` said it): a `cruddur serve` started before still asks the old one."""
    if target.moved_from is not None:
        warn(
            f"port {target.moved_from}, where the embedded PostgreSQL ran before, was taken "
            "by another program, so it moved (the database line says where): a `cruddur "
            "serve` started before still asks the old port: restart it"
        )


def if_interrupted(kept: str | None) -> None:
    """What a Ctrl-C from here on leaves as it was ("nothing was written"), for the line
    the CLI prints when it comes before the verb's own handler (while connecting); None
    once the verb starts changing things and its own handler, if any, says what stayed."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[KEPT_META] = kept


def env_file_read() -> Path | None:
    """The .env file this command read its settings from, if any."""
    from cruddur.cli import ENV_FILE_META

    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get(ENV_FILE_META)


PROD_META = "cruddur.prod"  # in click's meta, which every context of a command shares


def _setter(name: str) -> Any:
    def store(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        setattr(ctx.ensure_object(Cli), name, value)
        if name == "prod":  # for the error printer, which sees only the top context
            ctx.meta[PROD_META] = value
        return value

    return store


# In place of the local advice of an unreachable server's hint (db.errors), which sent
# the operator to the embedded server's status and told them how to start it.
_PROD_STATUS = "`cruddur db status --prod` says which server was tried. "


def for_prod(hint: str) -> str:
    """A hint's `bin/db-…` commands aimed at production: without `prod` they act on
    CONNECTION_URL's database (and bin/db-setup would drop and rebuild it)."""
    from cruddur.db.errors import LOCAL_REACH_HINT  # on an error only: it imports psycopg

    hint = hint.replace(LOCAL_REACH_HINT, _PROD_STATUS)
    return re.sub(r"`bin/(db-[a-z-]+)(?! prod\b)( |`)", r"`bin/\1 prod\2", hint)


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


class Seconds(click.ParamType):
    """A number of seconds (or of `unit`), at least `minimum` (0 by default) and at most
    `maximum`. Unlike click.FloatRange it refuses nan (no comparison fails, so no bound
    held it) and inf."""

    name = "seconds"

    def __init__(
        self, maximum: float | None = None, *, minimum: float = 0.0, unit: str = "seconds"
    ) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.unit = unit
        self.name = unit

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < self.minimum:
            self.fail(
                f"{value!r} is not a number of {self.unit} ({self.minimum:g} or more)", param, ctx
            )
        if self.maximum is not None and number > self.maximum:
            self.fail(f"{value!r} is too long: at most {self.maximum:,.0f} {self.unit}", param, ctx)
        return number


class TargetCommand(click.Command):
    """A db verb that takes --prod. A bare `prod` anywhere but a script's first argument
    (`bin/db-seed --yes prod`; bin/lib/command turns only that one into --prod, since
    elsewhere `prod` may be a value) is refused with the command that was meant, instead
    of click's "unexpected extra argument"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.allow_extra_args or not any(param.name == "prod" for param in self.params):
            return super().parse_args(ctx, args)
        given = list(args)  # the parser consumes args
        ctx.allow_extra_args = True  # to see the leftovers before click refuses them
        try:
            extra = super().parse_args(ctx, args)
        finally:
            ctx.allow_extra_args = False
        if extra and not ctx.resilient_parsing:
            if extra == ["prod"]:
                raise click.UsageError(_stray_prod(ctx, given), ctx)
            plural = "s" if len(extra) > 1 else ""
            ctx.fail(f"Got unexpected extra argument{plural} ({' '.join(extra)})")
        return extra


def _stray_prod(ctx: click.Context, given: list[str]) -> str:
    # The stray one is the `prod` that is no option's value (`--lock-timeout prod`).
    valued = {
        name
        for param in ctx.command.params
        if isinstance(param, click.Option) and not (param.is_flag or param.count)
        for name in param.opts
    }
    at = next(
        i for i, arg in enumerate(given) if arg == "prod" and (i == 0 or given[i - 1] not in valued)
    )
    others = [arg for arg in given[:at] + given[at + 1 :] if arg != "--"]
    if "--prod" in others:
        return f'"prod" is not an argument; --prod already chooses production: {_line(ctx, others)}'
    flagged = _line(ctx, [*others, "--prod"])
    # bin/lib/command names the script it runs: suggest that script only to its user.
    script = os.environ.get("CRUDDUR_SCRIPT", "")
    if ctx.parent is not None and script == f"{ctx.parent.info_name}-{ctx.info_name}":
        from cruddur.cli.output import typed_script

        first = shlex.join([typed_script(script), "prod", *others])
        return (
            f'"prod" is the target only as the first argument: run {first}, '
            f"or use --prod: {flagged}"
        )
    return f'"prod" is not an argument here; for production use --prod: {flagged}'


def _line(ctx: click.Context, args: list[str]) -> str:
    return " ".join([ctx.command_path, *([shlex.join(args)] if args else [])])
