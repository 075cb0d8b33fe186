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

import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_KEY = "cruddur.request_id"  # where the app finds it, in the WSGI environ
# A well-formed id from a proxy or client is kept, so logs on both sides line up.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

CORS_PATH_PREFIX = "/api/"
CORS_ALLOW_METHODS = "GET, HEAD, POST, OPTIONS"
CORS_ALLOW_HEADERS = "Content-Type, Authorization, X-Read-After"
CORS_EXPOSE_HEADERS = "ETag, Link, X-Next-Cursor, X-Request-Id, X-Read-After"
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
        given = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _CLIENT_REQUEST_ID.match(given) else uuid.uuid4().hex
        environ[REQUEST_ID_KEY] = request_id
        extra = [(REQUEST_ID_HEADER, request_id), *self._cors_headers(environ)]
        signed_in = "HTTP_AUTHORIZATION" in environ

        api = environ.get("PATH_INFO", "").startswith(CORS_PATH_PREFIX)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            replaced = {"x-content-type-options"} | ({"cache-control"} if signed_in else set())
            headers[:] = [(k, v) for k, v in headers if k.lower() not in replaced]
            # A browser must take a JSON answer as JSON, never sniff it into HTML.
            headers.append(("X-Content-Type-Options", "nosniff"))
            if signed_in:
                # An answer to a signed-in request is that user's: no shared or browser
                # cache may keep it for the next person on the machine or the proxy.
                headers.append(("Cache-Control", "no-store"))
            headers.extend(extra)
            # An API answer that does not say how to cache it (errors, health) is not
            # stored anywhere: it may depend on the caller or on this moment.
            if api and not any(name == "Cache-Control" for name, _ in headers):
                headers.append(("Cache-Control", "no-store"))
            return start_response(status, headers, exc_info)

        if self.observe is None:
            return self.app(environ, start)
        return self._observed(environ, start)

    def _observed(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        answered = ["500 INTERNAL SERVER ERROR"]  # if the app fails before answering

        def noted(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answered[0] = status
            return start(status, headers, exc_info)

        try:
            return self.app(environ, noted)
        finally:
            self.observe(environ, answered[0], time.perf_counter() - started)

    def _cors_headers(self, environ: dict[str, Any]) -> list[tuple[str, str]]:
        if not environ.get("PATH_INFO", "").startswith(CORS_PATH_PREFIX):
            return []
        # The answer differs by origin, even with none: a cache must not hand a browser
        # the answer stored for a request without Origin (it lacks Allow-Origin).
        headers = [("Vary", "Origin")]
        origin = environ.get("HTTP_ORIGIN")
        if origin is None or origin not in self.cors_origins:
            return headers  # no Allow-Origin: a browser withholds the answer
        headers.append(("Access-Control-Allow-Origin", origin))
        preflight = environ.get("REQUEST_METHOD") == "OPTIONS" and (
            "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
        )
        if preflight:
            headers += [
                ("Access-Control-Allow-Methods", CORS_ALLOW_METHODS),
                ("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS),
                ("Access-Control-Max-Age", CORS_MAX_AGE),
            ]
        else:
            headers.append(("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS))
        return headers
