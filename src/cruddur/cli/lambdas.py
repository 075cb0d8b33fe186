"""`cruddur lambda …`: build the Cognito post-confirmation function for deployment."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cruddur.cli.options import Cli, pass_cli
from cruddur.cli.output import done, err, info, result
from cruddur.ops.packaging import ARCHES, HANDLER, ZIP_NAME, build, check_output, default_output


@click.group("lambda")
def lambda_() -> None:
    """Build the Cognito post-confirmation Lambda's package."""


@lambda_.command()
@click.option(
    "--arch",
    type=click.Choice(sorted(ARCHES)),
    default="x86_64",
    show_default=True,
    help="The function's architecture (the template's Architecture parameter must match).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),  # as typed: a trailing / says a folder is meant
    help="Where to write the zip [default: the checkout's dist/post-confirmation.zip, from "
    "any folder: where deploy/*.yaml read it].",
)
@pass_cli
def package(cli: Cli, arch: str, output: str | None) -> None:
    """Build the function's zip: its handler, the RDS CA bundle, and psycopg's manylinux
    wheels for Python 3.12.

    Reproducible: the same sources and dependency versions give the same bytes. The
    wheels are kept under .cruddur/lambda-wheels, so only the first build for an
    architecture needs PyPI.
    """
    # Here, not at the top: `cruddur lambda --help` needs neither rich nor cryptography.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    from cruddur.aws.ca_bundle import bundle_path

    if output is None:
        output = str(default_output())
    if output.endswith(("/", os.sep)):
        # A folder that does not exist yet: taken as a file's path (Path drops the /), the
        # zip was written to a file named after the folder.
        raise click.BadParameter(
            f"{output!r} names a folder: give the zip's path, e.g. "
            f"{output.rstrip('/' + os.sep)}/{ZIP_NAME}",
            param_hint="'--output' / '-o'",
        )
    output_path = Path(output)
    check_output(output_path)  # before fetching anything
    home = cli.home  # and no other setting: none of them goes into the zip
    cache = home / "lambda-wheels"
    # Fetched (once, then kept) and checked here, on the machine that packages.
    ca_bundle = bundle_path(home, os.environ)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    )
    # Not on a terminal (a log, a CI job): no live display, just the lines below.
    bar = Progress(*columns, console=err(), transient=True, disable=not err().is_terminal)
    with bar as progress:
        task = progress.add_task(f"looking for the {arch} wheels", total=None)

        def report(what: str, done_: int, total: int) -> None:
            progress.update(task, description=what, completed=done_, total=total or None)

        built = build(output_path, arch, cache, ca_bundle, report)
    info(f"wheels: {', '.join(built.wheels)}")
    info(f"RDS CA bundle: {ca_bundle} (the function connects with sslmode=verify-full)")
    done(f"{built.entries} files, handler {HANDLER}, runtime python3.12 {arch}")
    # Absolute: which dist/ it went to is the question when `sam deploy` finds no zip.
    size = f"{built.size:,} bytes ({built.size / 1e6:.1f} MB)"
    result(f"{built.path.absolute()}  {size}  sha256 {built.sha256}")
