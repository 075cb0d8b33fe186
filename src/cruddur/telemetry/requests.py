"""What happens when a request is answered: its log line and its metrics.

`observer()` returns the function the WSGI edge (api/edge.py) calls with each finished
request, or None when neither the request log (level info or lower) nor metrics are on:
then the edge does nothing more than before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Request

from cruddur.telemetry import logs, metrics
from cruddur.telemetry.tracing import TRACE_IDS_KEY

USER_UUID_KEY = "cruddur.user_uuid"  # in the WSGI environ, set by api.auth once verified
UNMATCHED = "unmatched"  # the route of a request no URL rule took (404, 405)

REQUEST_KEY = "cruddur.request"  # in the WSGI environ: Flask's request, for its URL rule

Observer = Callable[[dict[str, Any], str, float], None]


class RememberedRequest(Request):
    """Flask's request, findable from the WSGI environ once Flask is done with it: the
    edge reads its URL rule (the route template) for the log line and the metrics."""

    def __init__(self, environ: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(environ, *args, **kwargs)
        environ[REQUEST_KEY] = self


def observer(request_id_key: str) -> Observer | None:
    write = logs.request_writer()
    metrics_on = metrics.enabled()
    if write is None and not metrics_on:
        return None

    def observe(environ: dict[str, Any], status_line: str, seconds: float) -> None:
        rule = getattr(environ.get(REQUEST_KEY), "url_rule", None)
        route = rule.rule if rule is not None else UNMATCHED
        method = environ.get("REQUEST_METHOD", "")
        status = int(status_line[:3])
        if metrics_on:
            metrics.observe_request(route, method, status, seconds)
        if write is not None:
            millis = seconds * 1000
            ids = environ.get(TRACE_IDS_KEY)
            write(
                f"{method} {route} {status} {millis:.1f} ms",
                {
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(millis, 2),
                    "request_id": environ.get(request_id_key),
                    "trace_id": ids[0] if ids else None,
                    "span_id": ids[1] if ids else None,
                    "user_uuid": environ.get(USER_UUID_KEY),
                },
            )

    return observe
