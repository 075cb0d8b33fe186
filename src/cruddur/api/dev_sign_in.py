"""Development sign-in for the web page: "sign in as" a local user, with a dev-key token.

Registered only when the API checks tokens from the local dev key pair (no Cognito user
pool configured): with a pool, these routes do not exist. The dev key pair already
serves only on a loopback address (config.AuthSettings.checked_for); these routes also
answer only a caller on a loopback address that came through no proxy and names this
machine in its Host header (not a rebound DNS name). To anyone else they look exactly
like a missing route (404).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, json, request
from werkzeug.exceptions import NotFound

from cruddur.api.bodies import UnreadableJson, json_body, require_json
from cruddur.api.db import get_db
from cruddur.api.errors import ApiError
from cruddur.config import Settings, is_loopback
from cruddur.dev_keys import DevKeys
from cruddur.limits import HANDLE_PATTERN
from cruddur.services import users as users_service

TOKEN_LIFETIME_SECONDS = 3600
# What a relaying proxy adds (RFC 7239, the de facto X-Forwarded-*, nginx's X-Real-IP, a
# CDN's client address, HTTP's own Via); any one refuses. A local forwarder sending only
# Via, True-Client-IP, CF-Connecting-IP or X-Forwarded-Host got a token for anyone.
# One that adds none (socat, ssh -R, a port-forward) cannot be told apart (README).
PROXY_HEADERS = (
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Real-Ip",
    "Via",
    "True-Client-Ip",
    "CF-Connecting-Ip",
)
# Where WSGI puts them: read from the environ, not through werkzeug's header view.
_PROXY_KEYS = frozenset("HTTP_" + name.upper().replace("-", "_") for name in PROXY_HEADERS)
# And the families proxies name their own from (a review: nginx adding only
# X-Forwarded-Proto, or Fastly-Client-IP, X-Original-Forwarded-For, Forwarded-For,
# X-Envoy-External-Address, each got a token for anyone): by prefix and suffix.
_PROXY_KEY_PREFIXES = (
    "HTTP_X_FORWARDED",
    "HTTP_X_ORIGINAL_FORWARDED",
    "HTTP_FORWARDED_",
    "HTTP_X_ENVOY_",
)
_PROXY_KEY_SUFFIXES = ("_CLIENT_IP", "_CONNECTING_IP", "_REAL_IP")


def _relayed(environ: dict[str, Any]) -> bool:
    return any(
        key in _PROXY_KEYS
        or key.startswith(_PROXY_KEY_PREFIXES)
        or (key.startswith("HTTP_") and key.endswith(_PROXY_KEY_SUFFIXES))
        for key in environ
    )


def local_caller(environ: dict[str, Any] | None = None) -> bool:
    """True for a request from this machine that no proxy relayed, sent to this machine
    by a local name. A web page whose own DNS name an attacker has pointed at 127.0.0.1
    (DNS rebinding) reaches us from the loopback address, through the user's browser, as
    its own origin; but its Host header still names the attacker's site."""
    if environ is None:
        environ = request.environ
    if _relayed(environ):
        return False
    # No Host (HTTP/1.0): not a browser. granian passes it on as "", not as missing.
    return is_loopback(environ.get("REMOTE_ADDR") or "") and _local_name(
        environ.get("HTTP_HOST") or "localhost"
    )


def _local_name(host: str) -> bool:
    """Whether a Host header (a name or address, maybe a port) names this machine."""
    name = host.rpartition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
    return is_loopback(name)


def _not_found() -> ApiError:
    # Word for word a missing route's 404 (werkzeug's), which a shorter text told apart.
    return ApiError(404, "not_found", NotFound.description)


def make_blueprint(settings: Settings) -> Blueprint:
    bp = Blueprint("dev_sign_in", __name__, url_prefix="/api/dev")
    keys = DevKeys(settings.home)

    @bp.before_request
    def only_from_this_machine() -> None:
        if not local_caller():
            raise _not_found()

    @bp.get("/users")
    def users() -> Response:
        body = users_service.sign_in_choices(get_db())
        return Response(body, mimetype="application/json")

    @bp.post("/sign-in")
    def sign_in() -> Response:
        require_json()
        try:
            given = json_body()  # 413 when too large, however the body is framed
        except UnreadableJson as exc:  # as the API's other bodies: not a bad handle
            raise ApiError(400, "invalid_json", str(exc)) from None
        handle = given.get("handle") if isinstance(given, dict) else None
        if not isinstance(handle, str) or not HANDLE_PATTERN.fullmatch(handle):
            raise ApiError(400, "invalid_handle", 'send {"handle": "<a local user\'s handle>"}')
        found = users_service.subject_for_handle(get_db(), handle)
        if found is None:
            raise ApiError(404, "user_not_found", f"no user has the handle {handle!r}")
        sub, handle = found  # the handle as stored: the page shows it
        token = keys.mint(settings.auth, sub, username=handle, expires_in=TOKEN_LIFETIME_SECONDS)
        body = {"access_token": token, "handle": handle, "expires_in": TOKEN_LIFETIME_SECONDS}
        response = Response(json.dumps(body), mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"  # a token: no cache may keep it
        return response

    return bp
