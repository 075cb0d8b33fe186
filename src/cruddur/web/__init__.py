"""The web front end: the page at the original's routes, and its fingerprinted assets.

The page is static: it reads everything through the JSON API like any other client.
Only its settings (where the API and Cognito are, whether dev sign-in exists) are put
into the HTML when it is served.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import NotFound

from cruddur.api import errors
from cruddur.api.activities import FIRST_PAGE_MAX_AGE
from cruddur.api.dev_sign_in import local_caller
from cruddur.api.edge import is_api_path
from cruddur.api.errors import ApiError
from cruddur.config import ReplicaSettings, Settings
from cruddur.web import assets as web_assets

LONG_CACHE = "public, max-age=31536000, immutable"
# A missing asset may be one a newer server has (a rolling deploy: the new page reached
# an old server): a CDN that kept the 404 would keep that asset broken for everyone.
MISSING_ASSET_CACHE = "no-store"
# The routes the page knows; other paths get the page too, with a 404 it explains.
# /status/<uuid>: a reply's parent, whose author the reply's row does not name.
PAGE_ROUTES = ("/", "/@<handle>", "/@<handle>/status/<activity_uuid>", "/status/<activity_uuid>",
               "/signin", "/signup", "/confirm")  # fmt: skip


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _is_asset_path(path: str) -> bool:
    return path.lstrip("/").startswith("assets/")


def content_security_policy(settings: Settings, *, header: bool = True) -> str:
    """No inline script or style, nothing from other origins but the API and Cognito, and
    Trusted Types: the page cannot assign HTML strings (innerHTML) at all."""
    connect = ["'self'"]
    if settings.web.api_url:
        connect.append(_origin(settings.web.api_url))
    if settings.web.cognito_url:
        connect.append(_origin(settings.web.cognito_url))
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src {' '.join(dict.fromkeys(connect))}",
            "base-uri 'none'",
            "form-action 'self'",
            *(["frame-ancestors 'none'"] if header else []),  # ignored in a <meta> policy
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
        ]
    )


def read_after_seconds(replica: ReplicaSettings) -> int:
    """How long after a write the page sends X-Read-After with its reads. Past it, a read
    without it shows the write anyway: a replica in use is at most max_lag behind (as last
    looked at, check_interval ago), a kept first page is FIRST_PAGE_MAX_AGE old and a CDN
    may serve it FIRST_PAGE_MAX_AGE later. Sent for longer, it only keeps the tab off the
    kept first page (every home feed read reaches a database)."""
    return math.ceil(replica.max_lag + replica.check_interval + 2 * FIRST_PAGE_MAX_AGE)


def page_config(settings: Settings, *, dev_sign_in: bool) -> dict:
    cognito = None
    if settings.web.cognito_url:
        cognito = {
            "url": settings.web.cognito_url,
            "userPoolId": settings.auth.issuer.rsplit("/", 1)[-1],
            "clientId": settings.auth.client_id,
        }
    return {
        "api": settings.web.api_url,
        "cognito": cognito,
        "devSignIn": dev_sign_in,
        "readAfterSeconds": read_after_seconds(settings.replica),
    }


def install(app: Flask, settings: Settings) -> None:
    assets = web_assets.for_this_server()
    csp = content_security_policy(settings)
    app.extensions["cruddur.web"] = assets
    bp = Blueprint("web", __name__)

    def page(status: int = 200) -> Response:
        config = page_config(settings, dev_sign_in=settings.auth.dev and local_caller())
        response = Response(assets.page(config), status, mimetype="text/html")
        response.headers["Content-Security-Policy"] = csp
        response.headers["Cache-Control"] = "no-cache"  # small; always the current assets
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def routed_page(**_: str) -> Response:
        # werkzeug matches "//signin" as "/signin" (leading slashes go before matching);
        # the page says "Page not found" there (the history refuses "//…"), and the
        # status says so too.
        return page(404 if request.environ.get("PATH_INFO", "").startswith("//") else 200)

    for rule in PAGE_ROUTES:
        # strict_slashes=False: /signin/ and /@handle/ are the page too (it drops the slash).
        bp.add_url_rule(rule, f"page{rule}", routed_page, strict_slashes=False)

    def not_found(exc: NotFound) -> Response:
        # A browser that follows a stale or mistyped link gets the page, which says so;
        # the API and the assets keep their JSON 404.
        path = request.path
        asset_path = _is_asset_path(path)
        if request.method in ("GET", "HEAD") and not (is_api_path(path) or asset_path):
            return page(404)
        response = errors.on_http_exception(exc)
        if asset_path:
            response.headers["Cache-Control"] = MISSING_ASSET_CACHE
        return response

    @bp.get("/assets/<fingerprint>/<name>")
    def asset(fingerprint: str, name: str) -> Response:
        found = assets.files.get(name)
        if found is None or fingerprint != assets.fingerprint:
            missing = errors.error_response(
                ApiError(404, "not_found", "no such asset (the page may be out of date)")
            )
            missing.headers["Cache-Control"] = MISSING_ASSET_CACHE
            return missing
        response = Response(found.body, mimetype=found.content_type)
        response.headers["Cache-Control"] = LONG_CACHE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    app.register_blueprint(bp)
    app.register_error_handler(NotFound, not_found)
