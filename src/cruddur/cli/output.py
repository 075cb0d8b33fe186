"""How the CLI talks: results on stdout, progress and errors on stderr, confirmations."""

from __future__ import annotations

import click
from rich.console import Console

from cruddur.targets import Target

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def info(message: str) -> None:
    err.print(message)


def done(message: str) -> None:
    err.print(f"[green]✓[/green] {message}")


def warn(message: str) -> None:
    err.print(f"[yellow]![/yellow] {message}")


def fail(message: str, hint: str | None = None) -> None:
    err.print(f"[bold red]error:[/bold red] {message}", soft_wrap=True)
    if hint:
        err.print(f"[cyan]hint:[/cyan] {hint}", soft_wrap=True)


def confirm_production(target: Target, action: str, *, yes: bool) -> None:
    """On production, make the user type the database name (or pass --yes)."""
    if not target.prod or yes:
        return
    dbname = target.dbname
    err.print(
        f"[bold yellow]About to {action} on PRODUCTION:[/bold yellow] {target.describe()}",
        soft_wrap=True,
    )
    try:
        typed = click.prompt(
            f"Type the database name ({dbname}) to go on",
            default="",
            show_default=False,
            err=True,
        )
    except click.Abort:
        typed = None
    if typed != dbname:
        raise click.ClickException(
            "not confirmed, nothing done (type the database name, or pass --yes)"
        )
