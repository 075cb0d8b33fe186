"""`cruddur web …`: the browser front end as files, for hosting elsewhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from cruddur.cli.output import done, info
from cruddur.config import ConfigError, Settings, WebSettings
from cruddur.errors import Problem

# What the built page depends on (besides every AWS_COGNITO_* variable, which the
# Cognito settings check for misspellings). CRUDDUR_REPLICA_MAX_LAG: how long after a
# write the page reads its own writes (web.read_after_seconds), as the API has it.
PAGE_SETTINGS = frozenset(
    {
        "CRUDDUR_HOME", "CRUDDUR_AUTH", "CRUDDUR_JWKS_URL", "CRUDDUR_API_URL",
        "CRUDDUR_COGNITO_URL", "CRUDDUR_REPLICA_MAX_LAG",
    }
)  # fmt: skip


@click.group()
def web() -> None:
    """The browser front end (`cruddur serve` also serves it at /)."""


class _Folder(click.Path):
    """click.Path, refusing "": it reads it as "." (an unset variable in `web build
    "$DIST"`), and the page's files landed wherever the command ran."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("is empty: give the folder to write the page into", param, ctx)
        return super().convert(value, param, ctx)


@web.command("build")
@click.argument("folder", type=_Folder(file_okay=False, path_type=Path))
@click.option(
    "--api-url",
    help="Where the page finds the API, e.g. https://api.cruddur.example [CRUDDUR_API_URL; "
    "default: the page's own origin].",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into FOLDER though it holds other files and no earlier build (its "
    "index.html, if any, is replaced).",
)
def build_command(folder: Path, api_url: str | None, force: bool) -> None:
    """Write the page into FOLDER for a static host such as S3 behind CloudFront.

    FOLDER gets index.html (cache it briefly) and assets/<fingerprint>/ (cache for a
    year). Serve index.html for every path the page knows (/@handle, /signin …): on
    CloudFront, map 403 and 404 to /index.html with status 200. The Cognito settings
    come from AWS_COGNITO_USER_POOL_ID and AWS_COGNITO_USER_POOL_CLIENT_ID; add the
    page's origin to the API's FRONTEND_URL so CORS admits it.
    """
    from cruddur.web.build import build  # here, not at the top: it imports Flask

    # The page's settings and nothing else: a malformed database, API or serving setting
    # (CRUDDUR_POOL_MAX_SIZE, PORT) has nothing to do with a static page.
    settings = Settings.from_env(
        {
            name: value
            for name, value in os.environ.items()
            if name in PAGE_SETTINGS or name.startswith("AWS_COGNITO_")
        }
    )
    if api_url is not None:
        # --api-url stands in for CRUDDUR_API_URL: a malformed one in the environment
        # does not matter then (Settings.but leaves unread fields unread).
        env = {**os.environ, "CRUDDUR_API_URL": api_url}
        try:
            web_settings = WebSettings.from_env(env, settings.auth)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("CRUDDUR_API_URL", "--api-url", 1)) from None
        settings = settings.but(web=web_settings)
    if not settings.web.api_url:
        # A host that answers /api/… with its index.html (CloudFront mapping 404 to it)
        # leaves the page saying the API did not answer: said here, before deploying.
        info(
            "no --api-url (CRUDDUR_API_URL): the page will ask its own origin's /api/…, "
            "so that host must pass /api/ on to the API"
        )
    if not settings.auth.dev:
        settings.auth.checked()
    else:
        info("no Cognito user pool set: the page will offer no sign-in")
    from cruddur.web.build import InsideThePackage, NotABuildFolder

    try:
        index, count = build(settings, folder, force=force)
    except InsideThePackage as exc:
        raise click.BadParameter(f"{exc}: give a folder of its own", param_hint="FOLDER") from None
    except NotABuildFolder as exc:
        raise Problem(str(exc), "give an empty or new folder, or --force to write there") from None
    except OSError as exc:  # a folder under /proc, a file where a folder must go, …
        where = exc.filename or folder
        raise Problem(
            f"cannot write the page to {where}: {exc.strerror or exc}",
            "give FOLDER a folder you can write (it is made when missing)",
        ) from None
    done(f"wrote {count} files to {folder} (index: {index.name})")
    # A <meta> policy cannot say frame-ancestors (browsers ignore it there): only the host
    # can keep another site from framing the sign-in form (clickjacking).
    info(
        "have the host send `Content-Security-Policy: frame-ancestors 'none'` with the page "
        "(CloudFront: a response headers policy); a <meta> tag cannot"
    )
