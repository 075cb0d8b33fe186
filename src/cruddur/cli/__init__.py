"""The `cruddur` command. Every failure ends in one line and a hint, not a traceback."""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

import click

from cruddur.cli.output import fail
from cruddur.config import debug_enabled
from cruddur.db.errors import IN_USE_HINT, explain
from cruddur.embedded import EmbeddedError
from cruddur.ops.databases import DatabaseInUse

# Each verb's module is imported when that verb runs (or when --help lists them all):
# `cruddur db …` then skips boto3, Flask and the rest, about half of a start's time.
VERBS = {
    "db": ("cruddur.cli.migrations", "db"),  # the db group, with the migration verbs added
    "dev": ("cruddur.cli.dev", "dev"),
    "lambda": ("cruddur.cli.lambdas", "lambda_"),
    "rds": ("cruddur.cli.rds", "rds"),
    "serve": ("cruddur.cli.serve", "serve"),
    "users": ("cruddur.cli.users", "users"),
    "web": ("cruddur.cli.web", "web"),
}


class CruddurGroup(click.Group):
    """Loads each verb on first use, and turns the errors users cause or meet into a
    message and exit status 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*VERBS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in VERBS:
            module, attribute = VERBS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            _whole_short_help(command)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except DatabaseInUse as exc:
            fail(str(exc), IN_USE_HINT)
        except EmbeddedError as exc:
            fail(str(exc))
        except Exception as exc:
            from cruddur.aws import explain_aws  # botocore, only when something failed

            explained = explain(exc) or explain_aws(exc)
            if explained is not None:
                fail(explained.message, explained.hint)
            elif debug_enabled():
                raise
            else:
                fail(
                    f"unexpected {type(exc).__name__}: {exc}",
                    "run again with CRUDDUR_DEBUG=1 to see where it happened",
                )
        ctx.exit(1)


@click.group(cls=CruddurGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cruddur", prog_name="cruddur")  # looked up on use
def main() -> None:
    """Cruddur's backend tools.

    Local commands act on CONNECTION_URL or, when it is not set, on an embedded
    PostgreSQL that cruddur starts itself under .cruddur/. Add --prod to act on
    PROD_CONNECTION_URL instead.
    """
    # The pool logs each connection it discards; a CLI reports failures itself.
    logging.getLogger("psycopg").setLevel(logging.ERROR)


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
