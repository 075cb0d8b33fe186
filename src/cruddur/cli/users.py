"""`cruddur users …`: the users table and Cognito, kept in step."""

from __future__ import annotations

import click

from cruddur.cli.options import Cli, if_interrupted, pass_cli, prod_option, yes_option
from cruddur.cli.output import done, err, info, printable, result, warn
from cruddur.config import POOL_ID


def _pool_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # Checked before anything runs: a blank or misspelt id reached Cognito (after the
    # database was resolved) as "Parameter validation failed" or "region_name 'é'".
    if value is not None and not POOL_ID.fullmatch(value.strip()):
        raise click.BadParameter(
            f"{value!r} is not a user pool id: <region>_<id>, e.g. ca-central-1_AbCd1234"
        )
    return value.strip() if value is not None else None


@click.group()
def users() -> None:
    """Cruddur's users and their Cognito accounts."""


@users.command("sync-cognito")
@click.option(
    "--user-pool-id",
    envvar="AWS_COGNITO_USER_POOL_ID",
    show_envvar=True,
    required=True,
    callback=_pool_id,
    help="The Cognito user pool, e.g. ca-central-1_AbCdEf123.",
)
@prod_option
@yes_option
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@pass_cli
def sync_cognito(cli: Cli, user_pool_id: str, dry_run: bool) -> None:
    """Give every confirmed Cognito user a row: insert the missing ones, and put the real
    Cognito id into rows that still carry a placeholder (MOCK-<handle>), matched by handle
    and claimed only by the user whose verified email is the row's (others are skipped).

    For users who confirmed while the post-confirmation Lambda was failing or before it
    was deployed. Rows already holding a Cognito id are never changed. A token signed for
    a replaced placeholder id is refused from then on. Needs the cognito-idp:ListUsers
    permission.
    """
    # Here, not at the top: `cruddur users --help` needs none of boto3, psycopg or rich.
    from rich.text import Text

    from cruddur.aws import client
    from cruddur.cli.db import INTERRUPTED
    from cruddur.cli.progress import RowsProgress
    from cruddur.ops.cognito_sync import SyncReport, list_users, sync
    from cruddur.ops.connections import database_db

    if_interrupted("nothing was written")  # until the writes' own handler below
    target = cli.target
    if not dry_run:
        cli.confirm("insert and update users from Cognito")
    # A pool id starts with its region (ca-central-1_AbCdEf123): ask that region.
    region = user_pool_id.split("_", 1)[0] if "_" in user_pool_id else None
    cognito = client("cognito-idp", region_name=region) if region else client("cognito-idp")
    pages = 0
    pool = printable(user_pool_id)

    with err().status(Text(f"listing the users of {pool} …")) as status:

        def on_page(count: int) -> None:
            nonlocal pages
            pages += 1
            status.update(Text(f"listing the users of {pool} … {count}"))

        found = list_users(cognito, user_pool_id, on_page)
    info(f"Cognito: {len(found)} users in {pool} ({pages} page{'s' * (pages != 1)})")

    report = SyncReport()  # filled as each user is written: what a Ctrl-C leaves
    with database_db(target, cli.settings.pool) as database:
        try:
            with RowsProgress(len(found)) as bar:
                bar.stage("checking" if dry_run else "writing")
                sync(database, found, dry_run=dry_run, report=report, progress=bar.at)
        except KeyboardInterrupt as exc:
            from cruddur.ops.interrupts import CommitCut

            if dry_run:
                warn("interrupted: dry run, nothing written")
            else:
                # Each user's write is a transaction of its own: those before the stop stay.
                cut = isinstance(exc, CommitCut)  # Ctrl-C twice, during a user's write
                warn(
                    f"interrupted: {len(report.inserted)} inserted and {len(report.updated)} "
                    "updated before the stop, and kept; "
                    + ("whether the one under way was is unknown; " if cut else "")
                    + "the rest not written (run it again: users recorded already are "
                    "left as they are)"
                )
            raise click.exceptions.Exit(INTERRUPTED) from None

    # Handles, names and reasons come from Cognito, where anyone signing up writes them.
    verb = "would insert" if dry_run else "inserted"
    for handle in report.inserted:
        result(f"{verb}  {printable(handle)}")
    for handle in report.updated:
        shown = printable(handle)
        result(f"{'would update' if dry_run else 'updated'}  {shown}  (placeholder id replaced)")
    for label, reason in report.skipped:
        result(f"skipped  {printable(label)}: {printable(reason)}")
    summary = (
        f"{len(report.inserted)} inserted, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged, {len(report.skipped)} skipped"
    )
    if dry_run:
        warn(f"dry run, nothing written: {summary}")
    else:
        done(summary)
    if report.updated:
        # A write checks the token's subject against the row (activities/writer.sql).
        info(
            f"{'would refuse' if dry_run else 'refused from now on'}: tokens signed for the "
            "placeholder ids (MOCK-<handle>) of the updated users; they sign in again"
        )
