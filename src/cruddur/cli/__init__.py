"""The `cruddur` command. Every failure ends in one line and a hint, not a traceback."""

from __future__ import annotations

import inspect
import logging
from importlib.metadata import version
from typing import Any

import click

from cruddur.aws import explain_aws
from cruddur.cli.output import fail
from cruddur.config import debug_enabled
from cruddur.db.errors import IN_USE_HINT, explain
from cruddur.embedded import EmbeddedError
from cruddur.ops.databases import DatabaseInUse


class CruddurGroup(click.Group):
    """Turns the errors users cause or meet into a message and exit status 1."""

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
@click.version_option(version("cruddur"), prog_name="cruddur")
def main() -> None:
    """Cruddur's backend tools.

    Local commands act on CONNECTION_URL or, when it is not set, on an embedded
    PostgreSQL that cruddur starts itself under .cruddur/. Add --prod to act on
    PROD_CONNECTION_URL instead.
    """
    # The pool logs each connection it discards; a CLI reports failures itself.
    logging.getLogger("psycopg").setLevel(logging.ERROR)


def _register() -> None:
    from cruddur.cli import migrations  # noqa: F401 - adds migrate, rollback, … to db
    from cruddur.cli.db import db
    from cruddur.cli.dev import dev
    from cruddur.cli.lambdas import lambda_
    from cruddur.cli.rds import rds
    from cruddur.cli.serve import serve
    from cruddur.cli.users import users
    from cruddur.cli.web import web

    main.add_command(db)
    main.add_command(dev)
    main.add_command(lambda_)
    main.add_command(rds)
    main.add_command(serve)
    main.add_command(users)
    main.add_command(web)
    _whole_short_help(main)


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


_register()
