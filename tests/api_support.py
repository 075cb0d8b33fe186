"""Helpers for the API tests: a test client that checks every response against the
OpenAPI document, an app of a test's own settings, and table snapshots."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from werkzeug.test import EnvironBuilder, TestResponse

from cruddur.api import OPENAPI, create_app
from cruddur.config import Settings

SPEC = OpenAPI.from_file_path(str(OPENAPI))


class CheckedClient:
    """Flask's test client; every response must match openapi.yaml or the test fails."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()

    def open(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        token = kwargs.pop("token", None)
        if token is not None:
            kwargs.setdefault("headers", {})["Authorization"] = f"Bearer {token}"
        response = self.client.open(path, method=method, **kwargs)
        # The sent request's body has been read; check against an identical one.
        sent = EnvironBuilder(path, method=method, **kwargs).get_request()
        try:
            SPEC.validate_response(WerkzeugOpenAPIRequest(sent), WerkzeugOpenAPIResponse(response))
        except (PathNotFound, OperationNotFound):
            # Only a path or method the API does not have may be missing from the document.
            assert response.status_code in (404, 405), f"{method} {path} is not documented"
        assert response.headers.get("X-Request-Id")
        if response.status_code >= 400:
            body = response.get_json()
            assert body["request_id"] == response.headers["X-Request-Id"]
            assert "Traceback" not in response.get_data(as_text=True)
        return response

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open("POST", path, **kwargs)


@contextmanager
def app_for(home: Path, url: str, **env: str) -> Iterator[Flask]:
    """create_app with CRUDDUR_HOME, CONNECTION_URL and `env` as its environment; its
    pool is closed when the block ends."""
    app = create_app(Settings.from_env({"CRUDDUR_HOME": str(home), "CONNECTION_URL": url, **env}))
    try:
        yield app
    finally:
        app.extensions["cruddur.db"].close()


def snapshot(url: str) -> str:
    """A digest of every row of both tables: equal digests, unchanged tables."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT (SELECT md5(string_agg(u::text, '|' ORDER BY u.uuid)) FROM users u),"
            " (SELECT md5(string_agg(a::text, '|' ORDER BY a.uuid)) FROM activities a)"
        ).fetchone()
    return hashlib.sha256(repr(rows).encode()).hexdigest()
