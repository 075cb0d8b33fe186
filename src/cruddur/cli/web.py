"""`cruddur web …`: the browser front end as files, for hosting elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cruddur.cli.options import Cli, pass_cli
from cruddur.cli.output import done, info
from cruddur.config import ConfigError, WebSettings
from cruddur.errors import Problem
from cruddur.web.build import build


@click.group()
def web() -> None:
    """The browser front end (`cruddur serve` also serves it at /)."""


@web.command("build")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--api-url",
    help="Where the page finds the API, e.g. https://api.cruddur.example [CRUDDUR_API_URL; "
    "default: the page's own origin].",
)
@pass_cli
def build_command(cli: Cli, folder: Path, api_url: str | None) -> None:
    """Write the page into FOLDER for a static host such as S3 behind CloudFront.

    FOLDER gets index.html (cache it briefly) and assets/<fingerprint>/ (cache for a
    year). Serve index.html for every path the page knows (/@handle, /signin …): on
    CloudFront, map 403 and 404 to /index.html with status 200. The Cognito settings
    come from AWS_COGNITO_USER_POOL_ID and AWS_COGNITO_USER_POOL_CLIENT_ID; add the
    page's origin to the API's FRONTEND_URL so CORS admits it.
    """
    settings = cli.settings
    if api_url is not None:
        # --api-url stands in for CRUDDUR_API_URL: a malformed one in the environment
        # does not matter then. Nothing of `serve`'s settings is read (Settings.but).
        env = {**os.environ, "CRUDDUR_API_URL": api_url}
        try:
            web_settings = WebSettings.from_env(env, settings.auth)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("CRUDDUR_API_URL", "--api-url", 1)) from None
        settings = settings.but(web=web_settings)
    if not settings.auth.dev:
        settings.auth.checked()
    else:
        info("no Cognito user pool set: the page will offer no sign-in")
    try:
        index, count = build(settings, folder)
    except OSError as exc:  # a folder under /proc, a file where a folder must go, …
        where = exc.filename or folder
        raise Problem(
            f"cannot write the page to {where}: {exc.strerror or exc}",
            "give FOLDER a folder you can write (it is made when missing)",
        ) from None
    done(f"wrote {count} files to {folder} (index: {index.name})")
