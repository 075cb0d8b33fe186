"""An API whose database is reachable but not migrated yet (a deploy whose migration job
is still running) answers 503 and says why, never a 500."""

from __future__ import annotations

from pathlib import Path

from api_support import CheckedClient

from cruddur.api import create_app
from cruddur.config import Settings


def test_a_database_without_the_schema_is_a_503_that_says_so(empty_db: str, tmp_path: Path):
    app = create_app(Settings.from_env({"CRUDDUR_HOME": str(tmp_path), "CONNECTION_URL": empty_db}))
    try:
        feed = CheckedClient(app).get("/api/activities/home")
        # A load balancer's check says the same, so no traffic reaches this task yet.
        health = CheckedClient(app).get("/api/health")
    finally:
        app.extensions["cruddur.db"].close()
    assert feed.status_code == 503
    assert feed.get_json()["error"] == "schema_not_ready"
    assert feed.headers["Retry-After"] == "1"
    assert health.status_code == 503
    assert health.get_json()["error"] == "schema_not_ready"
    assert health.get_json()["database"] == {"reachable": True, "schema": False}
    assert health.headers["Retry-After"] == "1"
