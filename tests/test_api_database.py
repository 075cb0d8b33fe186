"""The API's own path to its database (api/db.py): the URLs `cruddur serve` hands over
are the ones used, as they are; the app resolves no target of its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cruddur.api import create_app
from cruddur.api.db import ApiUrls
from cruddur.config import ConfigError, Settings
from cruddur.urls import parse


def test_the_app_imports_no_target_resolution_and_no_embedded_server() -> None:
    code = (
        "import sys, cruddur.worker; "
        "print(sorted({'cruddur.targets', 'cruddur.embedded'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_app_connects_with_the_urls_it_is_handed(api_home, api_url: str) -> None:
    # No CONNECTION_URL at all: the handed URL is the only way to the database.
    settings = Settings.from_env({"CRUDDUR_HOME": str(api_home), "CRUDDUR_FEED_CACHE": "0"})
    app = create_app(settings, urls=ApiUrls(api_url))
    try:
        assert app.test_client().get("/api/health").status_code == 200
        db = app.extensions["cruddur.db"].get()
        assert db.query_value("SELECT current_user") == parse(api_url)["user"]
        assert db.query_value("SHOW TimeZone") == "UTC"  # the API's session settings
    finally:
        app.extensions["cruddur.db"].close()


def test_urls_handed_through_the_servers_environment_come_back_the_same(tmp_path) -> None:
    handed = ApiUrls(
        "postgresql://api:secret@db.example:5432/cruddur",
        "postgresql://api:secret@replica.example:5432/cruddur",
    )
    env = {"CRUDDUR_HOME": str(tmp_path), **handed.environ()}
    assert ApiUrls.from_settings(Settings.from_env(env)) == handed
    primary_only = ApiUrls("postgresql://api@db.example/cruddur")
    assert set(primary_only.environ()) == {"CRUDDUR_API_CONNECTION_URL"}


def test_an_api_without_a_database_url_says_how_to_get_one(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cruddur serve"):
        ApiUrls.from_settings(Settings.from_env({"CRUDDUR_HOME": str(tmp_path)}))
