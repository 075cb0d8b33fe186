"""The API tests' response check (tests/openapi_check.py) gives openapi-core's verdict:
on responses that match openapi.yaml and on ones that break it in each way the document
can be broken, both pass or both fail (and fail the same way for an undocumented path,
method or server). And CheckedClient fails a test whose response breaks the document."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from api_support import CheckedClient
from flask import Flask
from openapi_check import ResponseMismatch, document
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.exceptions import (
    OperationNotFound,
    PathNotFound,
    ServerNotFound,
)
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Response

from cruddur.api import OPENAPI

UUID = "3f2b8c1e-4d5a-4b6c-8e7f-9a0b1c2d3e4f"
JSON = "application/json"


def activity(**changes: Any) -> dict:
    row = {
        "uuid": str(uuid.uuid4()),
        "display_name": "Andrew Brown",
        "handle": "andrewbrown",
        "message": "Cloud is fun!",
        "replies_count": 0,
        "reposts_count": 0,
        "likes_count": 0,
        "reply_to_activity_uuid": None,
        "expires_at": "2026-12-12T10:00:00+00:00",
        "created_at": "2026-12-05T10:00:00.123456+00:00",
    }
    row.update(changes)
    return {key: value for key, value in row.items() if value != "-"}


def error(**changes: Any) -> dict:
    body = {"error": "not_found", "message": "no such user", "request_id": "r1", "errors": []}
    body.update(changes)
    return {key: value for key, value in body.items() if value != "-"}


FEED_HEADERS = {"X-Request-Id": "r1", "ETag": '"abc"', "Cache-Control": "public, no-cache"}
CREATED = {"X-Request-Id": "r1", "Location": f"/api/activities/{UUID}", "Cache-Control": "no-store"}
UNAVAILABLE = {"X-Request-Id": "r1", "Retry-After": "1"}
DOWN = error(error="database_unavailable", status="unavailable", database={"reachable": False})
HEALTHY = {
    "status": "ok",
    "database": {
        "reachable": True,
        "writable": True,
        "latency_ms": 0.4,
        "pool": {"min_size": 1, "max_size": 4, "size": 1, "available": 1, "waiting": 0},
    },
}

# (method, path, status, mimetype, body, headers): what a server could answer.
VALID = {
    "feed": ("GET", "/api/activities/home", 200, JSON, [activity(), activity()], FEED_HEADERS),
    "empty feed": ("GET", "/api/activities/home", 200, JSON, [], {"X-Request-Id": "r1"}),
    "reply in a feed": (
        "GET", "/api/activities/@andrewbrown", 200, JSON,
        [activity(reply_to_activity_uuid=UUID)], {"X-Request-Id": "r1", "Link": "<x>"},
    ),
    "not modified": ("GET", "/api/activities/home", 304, None, None, FEED_HEADERS),
    "user not found": ("GET", "/api/activities/@nobody", 404, JSON, error(), {"X-Request-Id": "r"}),
    "a crud": (
        "GET", f"/api/activities/{UUID}", 200, JSON,
        {"activity": activity(), "replies": [activity(reply_to_activity_uuid=UUID)]},
        FEED_HEADERS,
    ),
    "a template's value that is not a uuid": (
        "GET", "/api/activities/home", 400, JSON, error(error="bad_cursor"), {"X-Request-Id": "r"},
    ),
    "created": ("POST", "/api/activities", 201, JSON, activity(), CREATED),
    "created, read after": (
        "POST", f"/api/activities/{UUID}/reply", 201, JSON, activity(reply_to_activity_uuid=UUID),
        {**CREATED, "X-Read-After": "0/16B3748.1796544012.3q2xRjYkV0c8yP1nWfL7aB"},
    ),
    "field errors": (
        "POST", "/api/activities", 422, JSON,
        error(errors=[{"field": "message", "code": "message_blank", "message": "blank"}]),
        {"X-Request-Id": "r1"},
    ),
    "healthy": ("GET", "/api/health", 200, JSON, HEALTHY, {"X-Request-Id": "r1"}),
    "database down": ("GET", "/api/health", 503, JSON, DOWN, UNAVAILABLE),
    "media type with a charset": (
        "GET", "/api/health", 200, "application/json; charset=utf-8", HEALTHY,
        {"X-Request-Id": "r"},
    ),
    "dev users": (
        "GET", "/api/dev/users", 200, JSON, [{"handle": "a", "display_name": "A"}],
        {"X-Request-Id": "r"},
    ),
    "dev sign-in": (
        "POST", "/api/dev/sign-in", 200, JSON,
        {"access_token": "t", "handle": "a", "expires_in": 3600}, {"X-Request-Id": "r"},
    ),
    "the document": ("GET", "/api/openapi.yaml", 200, "application/yaml", "openapi: 3.0.3", {}),
    "busy": ("POST", "/api/activities", 503, JSON, error(error="busy"), UNAVAILABLE),
}  # fmt: skip

BROKEN = {
    "an extra property": (
        "GET", "/api/activities/home", 200, JSON, [activity(likes=3)], FEED_HEADERS,
    ),
    "a missing property": (
        "GET", "/api/activities/home", 200, JSON, [activity(handle="-")], FEED_HEADERS,
    ),
    "a uuid that is not one": (
        "GET", "/api/activities/home", 200, JSON, [activity(uuid="nope")], FEED_HEADERS,
    ),
    "a date that is not one": (
        "GET", "/api/activities/home", 200, JSON, [activity(created_at="yesterday")], FEED_HEADERS,
    ),
    "a null where none may be": (
        "GET", "/api/activities/home", 200, JSON, [activity(handle=None)], FEED_HEADERS,
    ),
    "a number for a nullable uuid": (
        "GET", "/api/activities/home", 200, JSON, [activity(reply_to_activity_uuid=5)],
        FEED_HEADERS,
    ),
    "a negative count": (
        "GET", "/api/activities/home", 200, JSON, [activity(replies_count=-1)], FEED_HEADERS,
    ),
    "a count that is a string": (
        "GET", "/api/activities/home", 200, JSON, [activity(likes_count="1")], FEED_HEADERS,
    ),
    "a message over its length": (
        "GET", "/api/activities/home", 200, JSON, [activity(message="x" * 1025)], FEED_HEADERS,
    ),
    "a page over 100": (
        "GET", "/api/activities/home", 200, JSON, [activity()] * 101, FEED_HEADERS,
    ),
    "an object for a page": ("GET", "/api/activities/home", 200, JSON, {}, FEED_HEADERS),
    "no body": ("GET", "/api/activities/home", 200, JSON, None, FEED_HEADERS),
    "a body that is not JSON": (
        "GET", "/api/activities/home", 200, JSON, "[{", FEED_HEADERS,
    ),
    "an undocumented media type": (
        "GET", "/api/activities/home", 200, "text/html", [], FEED_HEADERS,
    ),
    "an undocumented status": ("GET", "/api/health", 418, JSON, error(), {"X-Request-Id": "r"}),
    "a reply's activity (a $ref) broken": (
        "GET", f"/api/activities/{UUID}", 200, JSON,
        {"activity": activity(uuid=1), "replies": []}, FEED_HEADERS,
    ),
    "an error without its request id": (
        "GET", "/api/activities/@nobody", 404, JSON, error(request_id="-"), {"X-Request-Id": "r"},
    ),
    "a field error with an extra property": (
        "POST", "/api/activities", 422, JSON,
        error(errors=[{"field": "m", "code": "c", "message": "m", "x": 1}]), {"X-Request-Id": "r"},
    ),
    "a created crud without its Location": (
        "POST", "/api/activities", 201, JSON, activity(), {"X-Request-Id": "r1"},
    ),
    "an X-Read-After outside its pattern": (
        "POST", "/api/activities", 201, JSON, activity(),
        {**CREATED, "X-Read-After": "0/16B3748.3q2xRjYkV0c8yP1nWfL7aB"},  # no expiry
    ),
    "a 503 without Retry-After": (
        "GET", "/api/health", 503, JSON, DOWN, {"X-Request-Id": "r1"},
    ),
    "a Retry-After that is not a number": (
        "GET", "/api/health", 503, JSON, DOWN, {**UNAVAILABLE, "Retry-After": "soon"},
    ),
    "a negative Retry-After": (
        "GET", "/api/health", 503, JSON, DOWN, {**UNAVAILABLE, "Retry-After": "-1"},
    ),
    "an allOf part broken": (
        "GET", "/api/health", 503, JSON, {**DOWN, "status": "ok"}, UNAVAILABLE,
    ),
    "a pool figure that is not a number": (
        "GET", "/api/health", 200, JSON,
        {**HEALTHY, "database": {**HEALTHY["database"], "pool": {"size": "1"}}},
        {"X-Request-Id": "r"},
    ),
    "too many dev users": (
        "GET", "/api/dev/users", 200, JSON,
        [{"handle": f"u{n}", "display_name": "U"} for n in range(21)], {"X-Request-Id": "r"},
    ),
    "an undocumented path": ("GET", "/api/nothing", 404, JSON, error(), {"X-Request-Id": "r"}),
    "an undocumented method": ("DELETE", "/api/health", 405, JSON, error(), {"X-Request-Id": "r"}),
    "a method the literal path lacks": (
        "POST", "/api/activities/home", 405, JSON, error(), {"X-Request-Id": "r"},
    ),
    "a path under another": ("GET", "/x/api/health", 404, JSON, error(), {"X-Request-Id": "r"}),
}  # fmt: skip

SPEC = OpenAPI.from_file_path(str(OPENAPI))


def _kind(error: Exception | None) -> str | None:
    for kind in (PathNotFound, OperationNotFound, ServerNotFound):
        if isinstance(error, kind):
            return kind.__name__
    return None if error is None else "mismatch"


def _verdicts(case: tuple) -> tuple[str | None, str | None]:
    method, path, status, mimetype, body, headers = case
    data = body if isinstance(body, str) else b"" if body is None else json.dumps(body)
    response = Response(data, status=status, headers=headers)
    if mimetype is None:
        del response.headers["Content-Type"]
    else:
        response.headers["Content-Type"] = mimetype
    sent = EnvironBuilder(path, method=method).get_request()
    theirs = ours = None
    try:
        SPEC.validate_response(WerkzeugOpenAPIRequest(sent), WerkzeugOpenAPIResponse(response))
    except OpenAPIError as error:
        theirs = error
    try:
        document(OPENAPI).check(  # the one CheckedClient uses
            method, path, status, response.mimetype, response.get_data(), response.headers
        )
    except (OpenAPIError, ResponseMismatch) as error:
        ours = error
    return _kind(theirs), _kind(ours)


@pytest.mark.parametrize("case", VALID.values(), ids=VALID.keys())
def test_what_openapi_core_passes_passes(case: tuple) -> None:
    assert _verdicts(case) == (None, None)


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_what_openapi_core_fails_fails(case: tuple) -> None:
    theirs, ours = _verdicts(case)
    assert theirs is not None, "the case must break the document"
    assert ours == theirs


def test_the_checked_client_fails_a_response_outside_the_document() -> None:
    app = Flask(__name__)

    @app.get("/api/health")
    def health():
        return {"status": "fine", "database": {"reachable": True}}, 200, {"X-Request-Id": "r"}

    @app.get("/api/activities/<path:rest>")
    def feed(rest: str):
        body = [activity(message=None)]
        return app.response_class(json.dumps(body), 200, {"X-Request-Id": "r"}, mimetype=JSON)

    @app.get("/api/users")
    def users():
        return [], 200, {"X-Request-Id": "r"}

    client = CheckedClient(app)
    with pytest.raises(AssertionError, match="status"):
        client.get("/api/health")
    with pytest.raises(AssertionError, match="message"):
        client.get("/api/activities/home")
    with pytest.raises(AssertionError, match="is not documented"):
        client.get("/api/users")
