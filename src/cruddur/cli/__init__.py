"""The `cruddur` command. Every failure ends in one line and a hint, not a traceback."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import sys
from pathlib import Path
from typing import Any

import click
from dotenv import find_dotenv, load_dotenv
from dotenv.parser import parse_stream

from cruddur.cli.options import PROD_META, for_prod
from cruddur.cli.output import fail, warn
from cruddur.config import debug_enabled
from cruddur.db.errors import explain
from cruddur.errors import Problem

# Each verb's module (and the name of its command in it) is imported when that verb runs
# (or when --help lists them all): `cruddur db …` then skips boto3, Flask and the rest,
# which it never uses. The db group gets its migration verbs from cruddur.cli.migrations.
VERBS = {
    "db": "cruddur.cli.migrations:db",
    "dev": "cruddur.cli.dev:dev",
    "lambda": "cruddur.cli.lambdas:lambda_",
    "rds": "cruddur.cli.rds:rds",
    "serve": "cruddur.cli.serve:serve",
    "users": "cruddur.cli.users:users",
    "web": "cruddur.cli.web:web",
}


class CruddurGroup(click.Group):
    """Loads each verb on first use, and prints every error a command raises in one
    place: `error:` and `hint:` lines, exit status 1 (dbmate's `action()` wrapper)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*VERBS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in VERBS:
            module, _, attribute = VERBS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            _whole_short_help(command)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            problem = as_problem(exc)
            if problem is None and debug_enabled():
                raise
            problem = problem or Problem(
                f"unexpected {type(exc).__name__}: {exc}",
                "run again with CRUDDUR_DEBUG=1 to see where it happened",
            )
            hint = problem.hint
            if hint and ctx.meta.get(PROD_META):
                hint = for_prod(hint)
            fail(problem.message, hint)
        ctx.exit(1)


def as_problem(exc: BaseException) -> Problem | None:
    """The error as the user should read it: our own Problem as it is, a database's or
    AWS's error explained; None for one nobody foresaw."""
    if isinstance(exc, Problem):
        return exc
    explained = explain(exc)
    if explained is None and "botocore" in sys.modules:  # only an AWS command loads it
        from cruddur.aws import explain_aws

        explained = explain_aws(exc)
    return explained


@click.group(cls=CruddurGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cruddur", prog_name="cruddur")  # looked up on use
def main() -> None:
    """Cruddur's backend tools.

    Local commands act on CONNECTION_URL or, when it is not set, on an embedded
    PostgreSQL that cruddur starts itself under .cruddur/. Add --prod to act on
    PROD_CONNECTION_URL instead. Settings come from the environment and from a .env
    file in the current folder (or above); the environment wins.
    """
    try:
        _load_env_file()
    except Problem as exc:
        if not {"-h", "--help"} & set(sys.argv[1:]):
            raise
        warn(exc.message)  # help needs no settings: shown all the same
    # The pool logs each connection it discards; a CLI reports failures itself.
    logging.getLogger("psycopg").setLevel(logging.ERROR)


def _load_env_file() -> None:
    """A .env file in this folder or above, as the flask CLI and dbmate read it; a
    variable already set in the environment wins over the file. A line python-dotenv
    cannot parse (an unclosed quote) stops the command: dotenv skipped it with a
    warning, and a skipped CONNECTION_URL sent every command to another database."""
    path = ""
    with contextlib.suppress(FileNotFoundError):  # the shell's folder was removed
        path = find_dotenv(usecwd=True)
    if not path:
        return
    hint = "fix it or remove it; the environment's own variables need no file"
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise Problem(f"{path} is not UTF-8 text", hint) from None
    except OSError as exc:
        raise Problem(f"cannot read {path}: {exc.strerror or exc}", hint) from None
    # By line number only: the line may hold a password.
    bad = [binding.original.line for binding in parse_stream(io.StringIO(text)) if binding.error]
    if bad:
        lines = ", ".join(str(line) for line in bad)
        raise Problem(
            f"{path}: line{'s' if len(bad) > 1 else ''} {lines} not NAME=value "
            "(an unclosed quote?)",
            hint,
        )
    load_dotenv(stream=io.StringIO(text), override=False)


def _first_sentence(help_text: str) -> str:
    paragraph = " ".join(inspect.cleandoc(help_text).split("\n\n", 1)[0].split())
    end = paragraph.find(". ")
    return paragraph if end == -1 else paragraph[: end + 1]


def _whole_short_help(command: click.Command) -> None:
    # A group lists each command with the first sentence of its help, which click cuts
    # to the terminal's width ("Serve the Cruddur API (default..."). A short_help is
    # shown whole, wrapped onto the next lines instead.
    if command.short_help is None and command.help:
        command.short_help = _first_sentence(command.help)
    for sub in getattr(command, "commands", {}).values():
        _whole_short_help(sub)
