"""One JSON shape for every error, a request id on every response, no tracebacks out.

    {"error": "<code>", "message": "<for people>", "request_id": "<id>", "errors": [...]}

`errors` lists failing fields (422) and is empty otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from flask import Flask, Response, current_app, json, request
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException, NotFound

from cruddur.api.edge import REQUEST_ID_KEY
from cruddur.db import InvalidText
from cruddur.db.errors import redacted_reason
from cruddur.db.reachability import DatabaseUnavailable
from cruddur.services.paging import BadPageRequest
from cruddur.services.validation import FieldError, ValidationFailed
from cruddur.telemetry import metrics

log = logging.getLogger("cruddur.api")

# Werkzeug's HTTP errors, by status, as stable codes.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer other than success: status, stable code, message, optional headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra or {}


def request_id() -> str:
    """This request's id, set by `edge.Edge` (and sent back in X-Request-Id)."""
    return request.environ.get(REQUEST_ID_KEY, "-")


def error_response(error: ApiError) -> Response:
    body = {
        "error": error.code,
        "message": error.message,
        "request_id": request_id(),
        "errors": [field.as_dict() for field in error.errors],
        **error.extra,
    }
    response = Response(json.dumps(body), error.status, mimetype="application/json")
    response.headers.update(error.headers)
    return response


# In app.extensions: (URL prefix, who may know its routes exist). Routing answers a wrong
# method with 405 and Allow before any of the blueprint's hooks run: for /api/dev/ that
# told any caller the development sign-in was there, where it is a 404 to them.
HIDDEN_ROUTES_KEY = "cruddur.hidden_routes"


def on_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    hidden = current_app.extensions.get(HIDDEN_ROUTES_KEY)
    if status == 405 and hidden is not None:
        prefix, may_know = hidden
        if request.path.startswith(prefix) and not may_know():
            return error_response(ApiError(404, "not_found", NotFound.description))
    message = exc.description or exc.name
    if status == 413:
        message = f"the request body is larger than {request.max_content_length} bytes"
    error = ApiError(status, _HTTP_CODES.get(status, "http_error"), message)
    response = error_response(error)
    if status == 405 and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _on_unexpected(exc: Exception) -> Response:
    if isinstance(exc, psycopg.Error):
        metrics.count_db_error(exc)
    # The traceback goes to the log (one JSON record, with the request id), never out.
    log.exception(
        "request %s failed: %s %s",
        request_id(),
        request.method,
        request.path,
        extra={"request_id": request_id()},
    )
    return error_response(
        ApiError(
            500,
            "internal_error",
            f"something went wrong on our side; quote request id {request_id()} when reporting it",
        )
    )


# While the database is down a request is answered at once, so the client may as well
# come back soon: the service serves again within a second of the database.
RETRY_AFTER_SECONDS = "1"


def unavailable_error(message: str, extra: dict[str, Any] | None = None) -> ApiError:
    return ApiError(
        503,
        "database_unavailable",
        message,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
        extra=extra,
    )


def schema_not_ready_error(extra: dict[str, Any] | None = None) -> ApiError:
    """A database that is reachable but not migrated yet: a deploy whose migration job
    has not finished (compose, ECS). It is the service's state, not the client's."""
    return ApiError(
        503,
        "schema_not_ready",
        "the database has no schema yet; try again shortly",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
        extra=extra,
    )


def busy_error(extra: dict[str, Any] | None = None) -> ApiError:
    """The database answers, but not in time for this request (database_busy)."""
    return ApiError(
        503,
        "database_busy",
        "the database is busy; try again shortly",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
        extra=extra,
    )


# A read-only database (default_transaction_read_only, a replica promoted by mistake
# or not yet, RDS's read-only mode) is an operator's fix, not a matter of seconds.
READ_ONLY_RETRY_AFTER_SECONDS = "5"


def read_only_error() -> ApiError:
    return ApiError(
        503,
        "database_read_only",
        "the database accepts no writes at the moment (it is read-only); reads still "
        "work; try again later",
        headers={"Retry-After": READ_ONLY_RETRY_AFTER_SECONDS},
    )


def database_busy(exc: Exception) -> bool:
    """The database answered, but this request could not have it in time: no pooled
    connection came free (PoolTimeout), a statement waited past lock_timeout for a lock
    another session holds (55P03), or ran past statement_timeout (57014). Busy, not
    away: nothing tells the outage watch (db/reachability.py) of these, since the
    connection is sound (Db._failed asks it only of a broken one)."""
    return isinstance(
        exc, PoolTimeout | psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled
    )


def _on_database_busy(exc: Exception) -> Response:
    metrics.count_db_error(exc)
    # One line, no traceback: a lock held by a migration or an operator's session is
    # the database's state, not a fault here.
    log.warning(
        "request %s: database busy: %s %s",
        request_id(),
        type(exc).__name__,
        getattr(exc, "sqlstate", None) or "",
        extra={"request_id": request_id()},
    )
    return error_response(busy_error())


def _on_read_only(exc: Exception) -> Response:
    metrics.count_db_error(exc)
    log.warning(
        "request %s: the database is read-only: %s",
        request_id(),
        getattr(exc, "sqlstate", None),
        extra={"request_id": request_id()},
    )
    return error_response(read_only_error())


def _on_database_unavailable(exc: Exception) -> Response:
    metrics.count_db_error(exc)
    # The driver's message can name hosts; what goes to the log is its kind, never the
    # connection string (redacted_reason), and nothing of it to the client. An outage
    # already known was logged once, when it began.
    log.log(
        logging.DEBUG if isinstance(exc, DatabaseUnavailable) else logging.WARNING,
        "request %s: database unavailable: %s",
        request_id(),
        redacted_reason(exc),
        extra={"request_id": request_id()},
    )
    return error_response(unavailable_error("the database is not reachable; try again shortly"))


def database_unavailable(exc: Exception) -> bool:
    return isinstance(exc, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError)


def _refused_a_value(exc: psycopg.Error) -> bool:
    """The server refused a value sent (a check, SQLSTATE class 22), or psycopg one it
    would not send (InvalidText). A DataError of psycopg's own, without a SQLSTATE, is a
    result it could not load (`infinity` into a datetime): the server's fault, a 500."""
    if isinstance(exc, InvalidText | psycopg.errors.CheckViolation):
        return True
    return isinstance(exc, psycopg.DataError) and exc.sqlstate is not None


def _on_database_error(exc: psycopg.Error) -> Response:
    if database_busy(exc):
        return _on_database_busy(exc)
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return _on_read_only(exc)
    if database_unavailable(exc):
        return _on_database_unavailable(exc)
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
        metrics.count_db_error(exc)
        log.warning(
            "request %s: the schema is missing: %s",
            request_id(),
            exc.sqlstate,
            extra={"request_id": request_id()},
        )
        return error_response(schema_not_ready_error())
    if _refused_a_value(exc):
        # The checks in services.validation should have caught it; the schema's own
        # checks are the last line, and their failure is still the client's input.
        metrics.count_db_error(exc)
        log.info(
            "request %s: refused by the database: %s",
            request_id(),
            exc.sqlstate,
            extra={"request_id": request_id()},
        )
        return error_response(
            ApiError(422, "validation_failed", "the database refused a value in the request")
        )
    return _on_unexpected(exc)


def install(app: Flask) -> None:
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(
        ValidationFailed,
        lambda exc: error_response(ApiError(422, "validation_failed", str(exc), errors=exc.errors)),
    )
    app.register_error_handler(
        BadPageRequest,
        lambda exc: error_response(ApiError(400, f"invalid_{exc.field}", str(exc))),
    )
    app.register_error_handler(HTTPException, on_http_exception)
    app.register_error_handler(PoolTimeout, _on_database_busy)
    app.register_error_handler(psycopg.Error, _on_database_error)
    app.register_error_handler(Exception, _on_unexpected)
