"""Headers every answer gets, set at the WSGI edge: a request id, CORS for the front end,
`X-Content-Type-Options: nosniff`, and `Cache-Control: no-store` for signed-in requests.

They only read request headers and add response headers, so they wrap the Flask app
instead of running as Flask hooks. As hooks (our request id, and flask-cors) they cost
about 40 µs of the home feed's ~300 µs of Python per request; here, about 3 (README,
"Measured").

When the request log or metrics are on, the edge also times each request and hands it,
with its status, to an observer (telemetry/requests.py); without one it does no more.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_KEY = "cruddur.request_id"  # where the app finds it, in the WSGI environ
# A well-formed id from a proxy or client is kept, so logs on both sides line up.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

CORS_PATH_PREFIX = "/api/"
CORS_ALLOW_METHODS = "GET, HEAD, POST, OPTIONS"
# If-None-Match: a page elsewhere sends a page's ETag (exposed below) back for a 304.
# Idempotency-Key: a page's retry of a write is stored once (api/activities.py).
CORS_ALLOW_HEADERS = "Content-Type, Authorization, X-Read-After, If-None-Match, Idempotency-Key"
# Location: a write's 201 names the new crud there; it is not a header a cross-origin
# script may read unless exposed (only a few, Content-Type among them, are by default).
CORS_EXPOSE_HEADERS = (
    "ETag, Link, Location, X-Next-Cursor, X-Request-Id, X-Read-After, Retry-After, "
    "WWW-Authenticate, Idempotent-Replayed"
)
CORS_MAX_AGE = "600"  # seconds a browser may reuse a preflight answer

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Edge:
    """WSGI middleware: X-Request-Id on every response; CORS headers for allowed origins."""

    def __init__(
        self,
        app: WsgiApp,
        cors_origins: Iterable[str],
        observe: Callable[[dict[str, Any], str, float], None] | None = None,
    ) -> None:
        self.app = app
        self.cors_origins = frozenset(cors_origins)
        self.observe = observe  # (environ, status line, seconds) once answered

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        given = environ.get("HTTP_X_REQUEST_ID")
        if given and _CLIENT_REQUEST_ID.match(given):
            request_id = given
        else:
            # 128 random bits as 32 hex digits, like uuid4().hex but without making a UUID
            # (or a getrandom call, which lets other threads take the GIL): an id that only
            # has to be unique, not secret. random is reseeded in each forked worker.
            request_id = f"{_random_bits(128):032x}"
        environ[REQUEST_ID_KEY] = request_id
        signed_in = "HTTP_AUTHORIZATION" in environ
        api = is_api_path(environ.get("PATH_INFO", ""))
        cors = self._cors_headers(environ) if api else ()
        replaced = _REPLACED_SIGNED_IN if signed_in else _REPLACED
        observe = self.observe
        started = time.perf_counter() if observe is not None else 0.0
        answered = ["500 INTERNAL SERVER ERROR"]  # if the app fails before answering

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answered[0] = status
            names = {header[0].lower() for header in headers}
            has_cache_control = "cache-control" in names
            # The app's own headers go on as they are, unless it set one the edge sets.
            kept = (
                [header for header in headers if header[0].lower() not in replaced]
                if not names.isdisjoint(replaced)
                else headers
            )
            # A browser must take a JSON answer as JSON, never sniff it into HTML.
            kept.append(_NOSNIFF)
            if signed_in:
                # An answer to a signed-in request is that user's: no shared or browser
                # cache may keep it for the next person on the machine or the proxy.
                kept.append(_NO_STORE)
            elif api and not has_cache_control:
                # An API answer that does not say how to cache it (errors, health) is not
                # stored anywhere: it may depend on the caller or on this moment.
                kept.append(_NO_STORE)
            kept.append((REQUEST_ID_HEADER, request_id))
            kept += cors
            if kept is not headers:
                headers[:] = kept
            return start_response(status, headers, exc_info)

        # Method names are case-sensitive (RFC 9110): `post` is no method of this API,
        # but Flask's routing upper-cases it, and `post /api/activities` made a crud.
        if not environ.get("REQUEST_METHOD", "").isupper():
            app = _unknown_method
        elif not environ.get("HTTP_HOST") and environ.get("SERVER_PROTOCOL") == "HTTP/1.1":
            app = _no_host  # granian hands on a missing Host as "": the request was served
        else:
            app = self.app
        if observe is None:
            return app(environ, start)
        try:
            return app(environ, start)
        finally:
            observe(environ, answered[0], time.perf_counter() - started)

    def _cors_headers(self, environ: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        # The answer differs by origin, even with none: a cache must not hand a browser
        # the answer stored for a request without Origin (it lacks Allow-Origin).
        origin = environ.get("HTTP_ORIGIN")
        if origin is None or origin not in self.cors_origins:
            return _VARY  # no Allow-Origin: a browser withholds the answer
        preflight = environ.get("REQUEST_METHOD") == "OPTIONS" and (
            "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
        )
        allowed = ("Access-Control-Allow-Origin", origin)
        return (*_VARY, allowed, *(_PREFLIGHT if preflight else _EXPOSE))


def _unknown_method(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """501, the answer to a method the server does not recognise (RFC 9110, 15.6.2)."""
    sent = environ.get("REQUEST_METHOD", "")[:32]
    message = f"unknown method {sent!r}: method names are upper case (GET, POST)"
    return _refuse(environ, start_response, "501 NOT IMPLEMENTED", "not_implemented", message)


def _no_host(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """400, the answer to an HTTP/1.1 request without a Host header (RFC 9112, 3.2)."""
    message = "an HTTP/1.1 request must send a Host header"
    return _refuse(environ, start_response, "400 BAD REQUEST", "missing_host", message)


def _refuse(
    environ: dict[str, Any], start_response: Callable[..., Any], status: str, error: str, said: str
) -> list[bytes]:
    body = json.dumps(
        {
            "error": error,
            "message": said,
            "errors": [],  # the one shape of every error (openapi.yaml, Error)
            "request_id": environ.get(REQUEST_ID_KEY),
        }
    ).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response(status, headers)
    return [b""] if environ.get("REQUEST_METHOD", "").upper() == "HEAD" else [body]


def is_api_path(path: str) -> bool:
    """An API path, however many slashes lead it (`//api/health` is not a way around
    the API's headers or its JSON errors), and `/api` itself."""
    if path.startswith(CORS_PATH_PREFIX):
        return True
    bare = path.lstrip("/")
    return bare == "api" or bare.startswith("api/")


# Made once: the headers the edge adds, and the names it replaces.
_random_bits = random.getrandbits
_NOSNIFF = ("X-Content-Type-Options", "nosniff")
_NO_STORE = ("Cache-Control", "no-store")
_REPLACED = frozenset({"x-content-type-options"})
_REPLACED_SIGNED_IN = frozenset({"x-content-type-options", "cache-control"})
_VARY = (("Vary", "Origin"),)
_PREFLIGHT = (
    ("Access-Control-Allow-Methods", CORS_ALLOW_METHODS),
    ("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS),
    ("Access-Control-Max-Age", CORS_MAX_AGE),
)
_EXPOSE = (("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS),)
