"""Shared fixtures: a real PostgreSQL server and throwaway databases on it.

The server is CRUDDUR_TEST_URL's (or CONNECTION_URL's) when one is given, otherwise
the project's embedded server, started on demand. Every database a test makes is
named cruddur_test_… and dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from cruddur.config import Settings
from cruddur.db import Db
from cruddur.embedded import EmbeddedPostgres
from cruddur.ops import loading
from cruddur.targets import embedded_server
from cruddur.urls import with_database

_STARTED_HERE = pytest.StashKey[bool]()


def _given_url() -> str | None:
    return os.environ.get("CRUDDUR_TEST_URL") or os.environ.get("CONNECTION_URL")


def _embedded() -> EmbeddedPostgres:
    return embedded_server(Settings.from_env())


def pytest_sessionstart(session: pytest.Session) -> None:
    # In the main process only (not in xdist workers): start the embedded server if the
    # run needs it, and remember to stop it at the end if this run started it.
    if _given_url() or hasattr(session.config, "workerinput"):
        return
    server = _embedded()
    session.config.stash[_STARTED_HERE] = not server.running()
    server.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if session.config.stash.get(_STARTED_HERE, False):
        _embedded().stop()


@pytest.fixture(scope="session")
def server_url() -> str:
    """A URL for the test server's maintenance database."""
    given = _given_url()
    if given:
        return with_database(given, "postgres")
    return with_database(_embedded().start(), "postgres")


@pytest.fixture(scope="session")
def admin(server_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(server_url, autocommit=True) as conn:
        yield conn


def _drop(admin: psycopg.Connection, name: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def new_db_name(admin: psycopg.Connection) -> Iterator[Callable[[], str]]:
    """Names for databases a test may create; whatever exists of them is dropped after."""
    names: list[str] = []

    def make() -> str:
        names.append(f"cruddur_test_{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield make
    for name in names:
        _drop(admin, name)


@pytest.fixture
def login_role(admin: psycopg.Connection) -> Iterator[str]:
    """A role with the password 'right-password' and no privileges beyond logging in."""
    name = f"cruddur_test_role_{uuid.uuid4().hex[:8]}"
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'right-password'").format(sql.Identifier(name))
    )
    yield name
    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def empty_db(admin: psycopg.Connection, server_url: str, new_db_name) -> str:
    """The URL of a new, empty database."""
    name = new_db_name()
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


@pytest.fixture
def seeded_db(empty_db: str) -> str:
    """The URL of a new database with the schema and seed loaded."""
    with Db(empty_db) as db:
        loading.load(db, loading.SCHEMA)
        loading.load(db, loading.SEED)
    return empty_db


@pytest.fixture
def db(seeded_db: str) -> Iterator[Db]:
    with Db(seeded_db) as opened:
        yield opened


# -- AWS, through moto's server mode --------------------------------------------------


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's standalone HTTP server on 127.0.0.1 (one per test worker)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh emulated AWS account: boto3 in this process and in commands run with the
    returned environment talks to moto's server, never to AWS."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"))
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


# -- the API, on a seeded database, with the dev key pair --------------------------------


@pytest.fixture(scope="session")
def api_home(tmp_path_factory: pytest.TempPathFactory):
    """A CRUDDUR_HOME for the API tests' dev key pair (one pair per test worker)."""
    return tmp_path_factory.mktemp("cruddur-home")


@pytest.fixture
def api_settings(api_home, seeded_db: str) -> Settings:
    return Settings.from_env({"CRUDDUR_HOME": str(api_home), "CONNECTION_URL": seeded_db})


@pytest.fixture
def app(api_settings: Settings):
    from cruddur.api import create_app

    app = create_app(api_settings)
    yield app
    app.extensions["cruddur.db"].close()


@pytest.fixture
def api(app):
    from api_support import CheckedClient

    return CheckedClient(app)


@pytest.fixture
def mint(api_settings: Settings) -> Callable[..., str]:
    """mint(sub=…, **options): a dev access token; mint(handle="bayko") for a seed user."""
    from cruddur.api.dev_keys import DevKeys

    def make(handle: str | None = "andrewbrown", *, sub: str | None = None, **options) -> str:
        return DevKeys(api_settings.home).mint(
            api_settings.auth, sub or f"MOCK-{handle}", **options
        )

    return make
