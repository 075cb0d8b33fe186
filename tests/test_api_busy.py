"""A database that answers but not in time, or takes no writes: a lock another session
holds, a statement past the API's statement_timeout, no pooled connection free, a
read-only database. Each is a 503 that says so, logged once without a traceback, and
none of them is an outage (README, "Outages")."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from api_support import CheckedClient
from flask import Flask
from psycopg import sql

from cruddur.api import create_app
from cruddur.config import ConfigError, Settings
from cruddur.db import Db
from cruddur.urls import parse

# A lock is held at most this long, then let go: without the API's bounds a blocked
# request waits for the lock, and the test must end (with a failure, not a hang).
RELEASE_AFTER = 8.0


@contextmanager
def held(url: str, statement: str, params: list[Any] | None = None) -> Iterator[None]:
    """`statement` (a lock) run by the owner in a transaction left open for the block,
    or for RELEASE_AFTER seconds."""
    conn = psycopg.connect(url)
    conn.execute(statement, params)
    timer = threading.Timer(RELEASE_AFTER, conn.rollback)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        conn.rollback()
        conn.close()


@pytest.fixture
def make_app(api_home, seeded_db: str, api_url: str, api_route) -> Iterator[Callable[..., Flask]]:
    """create_app with the API's settings (as the `app` fixture's) and `env` besides."""
    made: list[Flask] = []

    def make(**env: str) -> Flask:
        settings = Settings.from_env(
            {
                "CRUDDUR_HOME": str(api_home),
                "CONNECTION_URL": seeded_db,
                "CRUDDUR_API_CONNECTION_URL": api_url,
                **api_route.env(api_url),
                **env,
            }
        )
        made.append(create_app(settings))
        return made[-1]

    yield make
    for app in made:
        app.extensions["cruddur.feed_cache"].close()
        app.extensions["cruddur.db"].close()


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM activities").fetchone()[0]


def _logged_for(caplog: pytest.LogCaptureFixture, response) -> list[logging.LogRecord]:
    """The warnings and errors that name the response's request."""
    request_id = response.headers["X-Request-Id"]
    return [
        r for r in caplog.records if r.levelno >= logging.WARNING and request_id in r.getMessage()
    ]


def _busy(response) -> None:
    assert response.status_code == 503, response.get_json()
    body = response.get_json()
    assert body["error"] == "database_busy"
    assert "busy" in body["message"] and "reachable" not in body["message"]
    assert response.headers["Retry-After"] == "1"


def test_a_write_behind_a_table_lock_is_a_busy_503_within_seconds_and_not_stored(
    make_app, mint, seeded_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Unbounded, it waited for as long as the lock was held (a review: 25 s), and a few
    # such writes held every thread of a worker, /api/health's too.
    app = make_app()  # the default bounds: lock_timeout 1s, statement_timeout 4s
    api = CheckedClient(app)
    assert api.get("/api/activities/@andrewbrown").status_code == 200  # the pool is open
    before = _count(seeded_db)
    caplog.set_level(logging.INFO, logger="cruddur")
    with held(seeded_db, "LOCK TABLE activities IN SHARE ROW EXCLUSIVE MODE"):
        started = time.monotonic()
        write = api.post("/api/activities", json={"message": "stuck", "ttl": "1-day"}, token=mint())
        took = time.monotonic() - started
        health = api.get("/api/health")
    _busy(write)
    assert 0.8 < took < 3.0, took
    assert health.status_code == 200
    assert _count(seeded_db) == before  # nothing of it stored
    logged = _logged_for(caplog, write)
    assert len(logged) == 1 and logged[0].exc_info is None, logged
    # Busy is not away: no outage was begun, and the next write goes in.
    assert not app.extensions["cruddur.db"].get().reachability.down
    again = api.post("/api/activities", json={"message": "free", "ttl": "1-day"}, token=mint())
    assert again.status_code == 201
    assert _count(seeded_db) == before + 1


def test_a_statement_past_the_statement_timeout_is_a_busy_503_too(
    make_app, mint, seeded_db: str, api_route
) -> None:
    if api_route.bouncer is not None:
        pytest.skip("bounds of the test's own go at connect, as `options`: no pooler takes them")
    app = make_app(CRUDDUR_API_LOCK_TIMEOUT="0", CRUDDUR_API_STATEMENT_TIMEOUT="1s")
    api = CheckedClient(app)
    with psycopg.connect(seeded_db) as conn:
        parent, replies = conn.execute(
            "SELECT uuid, replies_count FROM activities WHERE reply_to_activity_uuid IS NULL"
            " AND expires_at > now() + interval '1 hour' LIMIT 1"
        ).fetchone()
    before = _count(seeded_db)
    # One crud's row locked: a reply raises its replies_count, and waits on it.
    with held(seeded_db, "SELECT 1 FROM activities WHERE uuid = %s FOR UPDATE", [parent]):
        started = time.monotonic()
        reply = api.post(f"/api/activities/{parent}/reply", json={"message": "re"}, token=mint())
        took = time.monotonic() - started
    _busy(reply)
    assert 0.8 < took < 3.0, took
    with psycopg.connect(seeded_db) as conn:
        count = conn.execute("SELECT replies_count FROM activities WHERE uuid = %s", [parent])
        assert count.fetchone()[0] == replies
    assert _count(seeded_db) == before
    assert not app.extensions["cruddur.db"].get().reachability.down


def test_no_free_connection_is_busy_not_unreachable(make_app) -> None:
    app = make_app(
        CRUDDUR_POOL_MIN_SIZE="1", CRUDDUR_POOL_MAX_SIZE="1", CRUDDUR_POOL_TIMEOUT="0.5",
        CRUDDUR_FEED_CACHE="0",
    )  # fmt: skip
    api = CheckedClient(app)
    db = app.extensions["cruddur.db"].get()
    with db.connection():  # the pool's one connection, taken
        read = api.get("/api/activities/@andrewbrown")
        health = api.get("/api/health")
    _busy(read)
    _busy(health)
    assert health.get_json()["database"] == {"reachable": True}
    assert not db.reachability.down
    assert api.get("/api/activities/@andrewbrown").status_code == 200


def test_a_read_only_database_refuses_writes_in_words_and_health_says_so(
    make_app, mint, seeded_db: str, admin: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # A replica promoted by mistake, RDS in read-only mode: every write was a 500 with a
    # traceback (ReadOnlySqlTransaction, 25006), and health said all was well.
    with _read_only(admin, seeded_db):
        api = CheckedClient(make_app())  # its sessions begin after: read-only
        before = _count(seeded_db)
        caplog.set_level(logging.INFO, logger="cruddur")
        write = api.post("/api/activities", json={"message": "no", "ttl": "1-day"}, token=mint())
        health = api.get("/api/health")
        feed = api.get("/api/activities/@andrewbrown")
    assert write.status_code == 503, write.get_json()
    assert write.get_json()["error"] == "database_read_only"
    assert "read-only" in write.get_json()["message"]
    assert write.headers["Retry-After"]
    logged = _logged_for(caplog, write)
    assert len(logged) == 1 and logged[0].exc_info is None, logged
    assert _count(seeded_db) == before
    # Still a 200: every instance shares the database, and reads work.
    assert health.status_code == 200
    assert health.get_json()["database"]["writable"] is False
    assert feed.status_code == 200


@contextmanager
def _read_only(admin: psycopg.Connection, url: str) -> Iterator[None]:
    """The database at `url` read-only for sessions begun in the block; writable again
    after it."""
    database = sql.Identifier(parse(url)["dbname"])
    admin.execute(
        sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(database)
    )
    try:
        yield
    finally:
        admin.execute(
            sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(database)
        )


def _sessions_begun(admin: psycopg.Connection, url: str) -> int:
    """Sessions the server has begun on the database so far (each one counted when it
    ends at the latest: wait a little after the last one closes)."""
    admin.execute("SELECT pg_stat_clear_snapshot()")
    return admin.execute(
        "SELECT sessions FROM pg_stat_database WHERE datname = %s", [parse(url)["dbname"]]
    ).fetchone()[0]


def _skip_behind_a_pooler(api_route) -> None:
    if api_route.bouncer is not None:
        pytest.skip("a pooler's own server sessions keep the setting their start saw")


def _post(api: CheckedClient, mint, message: str):
    return api.post("/api/activities", json={"message": message, "ttl": "1-day"}, token=mint())


def _refused(response) -> None:
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"] == "database_read_only"


# The bound the README gives: writes and health see a database made writable again
# within this, tried every POLL seconds (a review: still read-only 90 s later, until
# the pool replaced its sessions, up to an hour).
WRITABLE_AGAIN_WITHIN = 5.0
POLL = 0.5


def test_writes_go_in_again_within_seconds_of_the_database_made_writable(
    make_app, mint, seeded_db: str, admin: psycopg.Connection, api_route
) -> None:
    _skip_behind_a_pooler(api_route)
    with _read_only(admin, seeded_db):
        # Its sessions begin read-only, as after the operator's terminate; four of them,
        # each given in turn (psycopg_pool's queue).
        app = make_app(CRUDDUR_POOL_MIN_SIZE="4")
        api = CheckedClient(app)
        _refused(_post(api, mint, "no"))
        time.sleep(0.5)
        begun = _sessions_begun(admin, seeded_db)
        # While the database stays read-only, refused writes do not each cost a new
        # session (closing the connection that refused would): 20 in about 2 s.
        for _ in range(20):
            write = _post(api, mint, "no")
            _refused(write)
            time.sleep(0.1)
        time.sleep(0.5)
        assert _sessions_begun(admin, seeded_db) - begun <= 4
        assert api.get("/api/health").get_json()["database"]["writable"] is False
    writable_at = time.monotonic()
    before = _count(seeded_db)
    while True:
        write = _post(api, mint, "yes")
        if write.status_code == 201:
            break
        _refused(write)
        assert time.monotonic() - writable_at < WRITABLE_AGAIN_WITHIN, "still refused"
        time.sleep(POLL)
    assert _count(seeded_db) == before + 1
    assert api.get("/api/health").get_json()["database"]["writable"] is True
    for _ in range(5):  # every pooled session takes writes now, not one in a few
        write = _post(api, mint, "yes")
        assert write.status_code == 201, write.get_json()


def test_writes_under_way_on_old_sessions_all_go_in_once_the_database_is_writable(
    make_app, mint, seeded_db: str, admin: psycopg.Connection, api_route
) -> None:
    # A review: eight writes at once, the first since the database was made writable
    # again, each on a session begun while it was read-only: all eight were 503s, the one
    # that found it writable too; each old session cost a refused write.
    _skip_behind_a_pooler(api_route)
    with _read_only(admin, seeded_db):
        app = make_app(CRUDDUR_POOL_MIN_SIZE="8", CRUDDUR_POOL_MAX_SIZE="8")
        app.extensions["cruddur.db"].get().pool.wait(timeout=10)  # eight sessions, read-only
        _refused(_post(CheckedClient(app), mint, "no"))
    time.sleep(1.5)  # past the look that refusal made: the next refusal looks again
    before = _count(seeded_db)
    tokens = [mint() for _ in range(8)]
    start = threading.Barrier(8)

    def post(token: str) -> int:
        start.wait()
        write = CheckedClient(app).post(
            "/api/activities", json={"message": "at once", "ttl": "1-day"}, token=token
        )
        return write.status_code

    with ThreadPoolExecutor(8) as writers:
        statuses = list(writers.map(post, tokens))
    assert statuses == [201] * 8
    assert _count(seeded_db) == before + 8


def test_a_keyed_write_stored_before_the_database_went_read_only_is_answered_again(
    make_app, mint, seeded_db: str, admin: psycopg.Connection, api_route
) -> None:
    # A review: the retry, under its key, of a write stored just before was a 503
    # (database_read_only); the first answer is kept, and reading it writes nothing.
    _skip_behind_a_pooler(api_route)
    token, key = mint(), {"Idempotency-Key": "stored-then-read-only"}
    body = {"message": "kept", "ttl": "1-day"}
    first = CheckedClient(make_app()).post("/api/activities", json=body, token=token, headers=key)
    assert first.status_code == 201, first.get_json()
    with _read_only(admin, seeded_db):
        api = CheckedClient(make_app())  # its sessions begin read-only
        again = api.post("/api/activities", json=body, token=token, headers=key)
        other = api.post(
            "/api/activities", json={"message": "new", "ttl": "1-day"}, token=token,
            headers={"Idempotency-Key": "never-stored"},
        )  # fmt: skip
    assert again.status_code == 201, again.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()
    _refused(other)


def test_health_says_writable_within_seconds_of_the_database_made_writable(
    make_app, mint, seeded_db: str, admin: psycopg.Connection, api_route
) -> None:
    _skip_behind_a_pooler(api_route)
    # With no write to find it: the pooled session health asked kept its start's setting.
    app = make_app()
    api = CheckedClient(app)
    assert api.get("/api/health").get_json()["database"]["writable"] is True
    with _read_only(admin, seeded_db):
        # The operator's recipe: sessions begun before keep writing until terminated.
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [parse(seeded_db)["dbname"]],
        )
        deadline = time.monotonic() + WRITABLE_AGAIN_WITHIN
        while api.get("/api/health").get_json()["database"].get("writable") is not False:
            assert time.monotonic() < deadline, "health never said read-only"
            time.sleep(POLL)
        _refused(_post(api, mint, "no"))
    writable_at = time.monotonic()
    while api.get("/api/health").get_json()["database"]["writable"] is not True:
        assert time.monotonic() - writable_at < WRITABLE_AGAIN_WITHIN, "health still says no"
        time.sleep(POLL)
    write = _post(api, mint, "yes")
    assert write.status_code == 201, write.get_json()


def test_a_writable_database_says_so_in_health(api) -> None:
    assert api.get("/api/health").get_json()["database"]["writable"] is True


@pytest.mark.parametrize("name", ["CRUDDUR_API_LOCK_TIMEOUT", "CRUDDUR_API_STATEMENT_TIMEOUT"])
def test_a_malformed_api_timeout_is_refused_naming_it(tmp_path, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"CRUDDUR_HOME": str(tmp_path), name: "soon"})
    given = Settings.from_env({"CRUDDUR_HOME": str(tmp_path), name: "1500ms"})
    assert "1500ms" in given.api_timeouts.as_settings().values()


def test_behind_a_pooler_no_session_is_begun_to_look(admin, seeded_db: str) -> None:
    # A new client session would land on one of the pooler's own server sessions, which
    # says nothing of the others: the look began a session and drained the pool for
    # nothing, once a second per worker.
    db = Db(seeded_db, behind_pooler=True)
    try:
        db.open()
        before = _sessions_begun(admin, seeded_db)
        assert db.writable_again() is False
        time.sleep(0.2)  # a session is counted when it ends
        assert _sessions_begun(admin, seeded_db) == before
    finally:
        db.close()


def test_writes_refused_while_a_slow_look_runs_make_no_second_look_at_once() -> None:
    # A review: a look slower than a second (a session slow to open) was followed at once
    # by another, for the refused writes that had waited on it, each holding its pooled
    # connection up to 2 s. (A callable stands in for the new session: its speed is the
    # point, not the database's answer.)
    from cruddur.db.read_only import ReadOnlyLook

    def slow_session_still_read_only() -> bool:
        time.sleep(1.2)
        return False

    look = ReadOnlyLook(slow_session_still_read_only, lambda: None, every=1.0)
    with ThreadPoolExecutor(4) as writers:
        answers = list(writers.map(lambda _: look.refused(), range(4)))
    assert answers == [False] * 4
    assert look.refused() is False  # just after the look: its answer, no new look
    assert look.looks == 1
