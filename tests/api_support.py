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
from openapi_check import document
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from werkzeug.test import TestResponse

from cruddur.api import OPENAPI, create_app
from cruddur.config import Settings

# openapi.yaml's rules, as openapi-core's validate_response applies them, compiled once
# per operation and status (tests/openapi_check.py; test_openapi_check.py holds the two
# to the same verdicts).
DOCUMENT = document(OPENAPI)


class CheckedClient:
    """Flask's test client; every response must match openapi.yaml or the test fails."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()

    def open(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        token = kwargs.pop("token", None)
        if token is not None:
            kwargs.setdefault("headers", {})["Authorization"] = f"Bearer {token}"
        response = self.client.open(path, method=method, **kwargs)
        sent = response.request  # the request as the app saw it: its path, decoded
        try:
            DOCUMENT.check(
                sent.method,
                sent.root_path + sent.path,
                response.status_code,
                response.mimetype,
                response.get_data(),
                response.headers,
            )
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
