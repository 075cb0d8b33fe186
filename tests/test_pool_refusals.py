"""A server that answers but refuses new connections (credentials no longer accepted,
no connection slot left): the API serves from the connections its pool holds, says why
once in a while, and tries again at a bounded rate (db/reachability.py, db/pool.py)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from cruddur.api import create_app
from cruddur.config import Settings
from cruddur.db.reachability import Reachability, RefusedStreak
from cruddur.dev_keys import DevKeys
from cruddur.urls import with_user

PASSWORD = "fix-pool-secret-pw"


@pytest.fixture
def own_role(admin: psycopg.Connection, app_roles) -> Iterator[Callable[[], str]]:
    """make(): a role of the test's own (fix_pool_*) with the API role's privileges, so
    it can be made NOLOGIN or given a CONNECTION LIMIT without touching other tests'."""
    made: list[str] = []

    def make() -> str:
        name = f"fix_pool_{uuid.uuid4().hex[:8]}"
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(name), sql.Literal(PASSWORD), sql.Identifier(app_roles["api"][0])
            )
        )
        made.append(name)
        return name

    yield make
    for name in made:
        _terminate(admin, name)
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _terminate(admin: psycopg.Connection, role: str, application: str = "%") -> None:
    """End the role's sessions (those of `application`), and wait until they are gone."""
    query = "FROM pg_stat_activity WHERE usename = %s AND application_name LIKE %s"
    admin.execute(f"SELECT pg_terminate_backend(pid) {query}", [role, application])
    deadline = time.monotonic() + 10
    while admin.execute(f"SELECT count(*) {query}", [role, application]).fetchone()[0]:
        assert time.monotonic() < deadline, "sessions still there"
        time.sleep(0.05)


def _alter(admin: psycopg.Connection, role: str, options: str) -> None:
    admin.execute(sql.SQL("ALTER ROLE {} " + options).format(sql.Identifier(role)))


@pytest.fixture
def role_app(api_home, seeded_db: str) -> Iterator[Callable[..., object]]:
    """make(role, **env): the API on the seeded database as `role`, no feed cache."""
    apps = []

    def make(role: str, **env: str):
        settings = Settings.from_env(
            {
                "CRUDDUR_HOME": str(api_home),
                "CONNECTION_URL": seeded_db,
                "CRUDDUR_API_CONNECTION_URL": with_user(seeded_db, role, PASSWORD),
                "CRUDDUR_FEED_CACHE": "0",
                **env,
            }
        )
        app = create_app(settings)
        app.config["token"] = DevKeys(api_home).mint(
            settings.auth, "MOCK-andrewbrown", expires_in=3600
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["cruddur.feed_cache"].close()
        app.extensions["cruddur.db"].close()


def _write(app) -> tuple[int, float]:
    started = time.monotonic()
    response = app.test_client().post(
        "/api/activities",
        json={"message": f"fix-pool {uuid.uuid4().hex[:8]}", "ttl": "1-hour"},
        headers={"Authorization": f"Bearer {app.config['token']}"},
    )
    return response.status_code, time.monotonic() - started


def _get(app, path: str) -> tuple[int, float]:
    started = time.monotonic()
    return app.test_client().get(path).status_code, time.monotonic() - started


def _in_thread(work: Callable[[], tuple[int, float]]) -> Callable[[], tuple[int, float]]:
    """Start `work`; the returned call waits for its answer."""
    answer: list[tuple[int, float]] = []
    thread = threading.Thread(target=lambda: answer.append(work()), daemon=True)
    thread.start()

    def result() -> tuple[int, float]:
        thread.join(30)
        assert answer, "no answer in 30 s"
        return answer[0]

    return result


def _until_ok(app, path: str, within: float) -> float:
    """Seconds until `path` answers 200; fails after `within`."""
    started = time.monotonic()
    while _get(app, path)[0] != 200:
        assert time.monotonic() - started < within, f"{path} not 200 within {within} s"
        time.sleep(0.02)
    return time.monotonic() - started


def _warnings(caplog, since: float, until: float | None = None) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and r.name.startswith(("cruddur.db", "psycopg"))
        and since <= r.created <= (until or time.time())
    ]


def test_credentials_refused_while_the_pool_holds_connections_keep_it_serving(
    admin, own_role, role_app, caplog
) -> None:
    # The role's password rotated before the app has the new one (NOLOGIN here; local
    # auth is trust): the pool failing to grow marked the database down, and every
    # request got a 503 though the pool's connections still worked.
    role = own_role()
    app = role_app(role, CRUDDUR_POOL_MIN_SIZE="3", CRUDDUR_POOL_TIMEOUT="5")
    caplog.set_level(logging.WARNING)
    assert _get(app, "/api/health")[0] == 200
    pool = app.extensions["cruddur.db"].get().pool
    held = [pool.getconn(timeout=5) for _ in range(3)]  # the pool's three, all in use
    _alter(admin, role, "NOLOGIN")
    began = time.time()
    write = _in_thread(lambda: _write(app))  # needs a new connection: refused
    time.sleep(1.5)
    pool.putconn(held.pop())  # one frees up: the waiting write takes it
    status, _ = write()
    assert status == 201
    for path in ("/api/health", "/api/activities/home"):
        assert _get(app, path)[0] == 200, path
    assert _write(app)[0] == 201
    lines = _warnings(caplog, began)
    said = [line for line in lines if "not permitted to log in" in line]
    assert len(said) == 1, lines  # the reason, once (not once per attempt)
    assert len(lines) <= 3, lines
    assert PASSWORD not in caplog.text

    # The credentials work again: a request that needs a new connection gets one.
    _alter(admin, role, "LOGIN")
    held.append(pool.getconn(timeout=5))
    status, took = _write(app)
    assert status == 201 and took < 1.5, (status, took)
    for conn in held:
        pool.putconn(conn)

    # No connection left at all (refused, and the pool's sessions ended): a prompt 503,
    # not the pool's whole wait; and serving again as soon as the role may log in.
    _alter(admin, role, "NOLOGIN")
    _terminate(admin, role)
    for _ in range(3):
        status, took = _write(app)
        assert status == 503 and took < 1.0, (status, took)
    assert _get(app, "/api/health")[0] == 503
    _alter(admin, role, "LOGIN")
    assert _until_ok(app, "/api/health", within=2.0) < 1.0
    assert _write(app)[0] == 201


def test_a_full_server_is_retried_at_a_bounded_rate_and_logged_once_in_a_while(
    admin, own_role, role_app, seeded_db: str, caplog
) -> None:
    # At a role's CONNECTION LIMIT each worker retried connections with no pause and
    # logged ~25 warnings a second, on and on after the requests had ended.
    role = own_role()
    app = role_app(role, CRUDDUR_POOL_TIMEOUT="3")
    caplog.set_level(logging.WARNING)
    assert _get(app, "/api/health")[0] == 200  # the pool's one connection
    url = with_user(seeded_db, role, PASSWORD)
    others = [psycopg.connect(url) for _ in range(3)]
    try:
        # The pool holds a connection, and there is no slot for another.
        _alter(admin, role, "CONNECTION LIMIT 4")
        pool = app.extensions["cruddur.db"].get().pool
        held = pool.getconn(timeout=5)
        began = time.time()
        write = _in_thread(lambda: _write(app))  # waits: busy, not away
        time.sleep(1.0)
        pool.putconn(held)
        assert write()[0] == 201
        assert _get(app, "/api/health")[0] == 200
        time.sleep(2.0)  # nothing asks for a connection now
        lines = _warnings(caplog, began)
        assert len([line for line in lines if "too many" in line]) == 1, lines
        assert len(lines) <= 3, lines
        quiet = time.time()
        time.sleep(2.0)
        assert _warnings(caplog, quiet) == []  # no retries once nobody waits

        # The pool's own sessions ended, and none to be had: a prompt 503, and bounded
        # retries and log lines after it.
        _alter(admin, role, "CONNECTION LIMIT 3")
        _terminate(admin, role, "cruddur-api%")
        began = time.time()
        status, took = _write(app)
        assert status == 503 and took < 1.0, (status, took)
        time.sleep(3.0)
        lines = _warnings(caplog, began)
        assert len(lines) <= 3, lines

        others.pop().close()  # a slot frees up: serving again within the retry interval
        assert _until_ok(app, "/api/health", within=2.0) < 1.0
        assert _write(app)[0] == 201
    finally:
        for conn in others:
            conn.close()


def test_credentials_refused_from_the_start_get_prompt_503s_that_say_why(
    admin, own_role, role_app, caplog
) -> None:
    # A restart with a wrong password: no connection to serve from, so each request gets
    # its 503 at once, and the log says the server refused the role, not "unreachable".
    role = own_role()
    _alter(admin, role, "NOLOGIN")
    app = role_app(role, CRUDDUR_POOL_TIMEOUT="5")
    caplog.set_level(logging.WARNING)
    began = time.time()
    for path in ("/api/health", "/api/activities/home", "/api/health"):
        status, took = _get(app, path)
        assert status == 503 and took < 1.0, (path, status, took)
    assert _write(app)[0] == 503
    time.sleep(1.0)  # probes go on meanwhile
    lines = _warnings(caplog, began)
    assert len(lines) == 2, lines  # the refusal, and that the pool holds no connection
    assert all("not permitted to log in" in line for line in lines), lines
    assert "the pool holds none" in lines[1] and "unreachable" not in caplog.text
    _alter(admin, role, "LOGIN")
    assert _until_ok(app, "/api/health", within=2.0) < 1.0
    assert _write(app)[0] == 201


def test_refusals_that_go_on_are_tried_less_often(admin, own_role, seeded_db: str) -> None:
    # Refused credentials were tried every 0.5 s by each worker for as long as they
    # lasted, traffic or not (~2.7 failed logins a second, a FATAL line each in the
    # server's log). Past a while of refusals the gap is longer; a login that works
    # again is still found within it. (The gaps here are short, for the test's time.)
    role = own_role()
    _alter(admin, role, "NOLOGIN")
    url = with_user(seeded_db, role, PASSWORD)
    attempts: list[float] = []

    def probe() -> None:
        attempts.append(time.monotonic())
        psycopg.connect(url, connect_timeout=2).close()

    gate = Reachability(
        probe, lambda: None, interval=0.05, holding=lambda: False, refused_retry=(0.1, 0.6, 0.5)
    )
    try:
        started = time.monotonic()
        assert gate.verify() is False  # refused, and no connection held: down
        time.sleep(2.2)
        early = [t for t in attempts if t - started < 0.6]
        later = [t for t in attempts if 0.8 <= t - started < 2.2]
        assert len(early) >= 3, attempts  # every ~0.1 s at first
        assert 2 <= len(later) <= 4, [round(t - started, 2) for t in attempts]  # every 0.5 s
        assert gate.retry_gap() == 0.5
        _alter(admin, role, "LOGIN")
        back = time.monotonic()
        while gate.down:
            assert time.monotonic() - back < 1.5, "not back within the longer gap"
            time.sleep(0.02)
        assert gate.retry_gap() == 0.1  # a connection went in: short gaps again
    finally:
        gate.close()


@pytest.mark.parametrize("kind", ["listener", "notifier"])
def test_the_feed_caches_refused_connections_are_tried_less_often_too(
    admin, own_role, seeded_db: str, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # A review: the feed cache's listener and notifier tried a refused login every 2 s
    # for as long as it lasted (above: the pool's every 5 s), so a worker made six times
    # the pool's failed logins against a rotated password. (Short gaps, for the time.)
    from cruddur.services import feed_cache

    role = own_role()
    _alter(admin, role, "NOLOGIN")
    url = with_user(seeded_db, role, PASSWORD)
    attempts: list[float] = []
    connect = psycopg.connect

    def counted(conninfo, *args, **kwargs):
        if role in conninfo:  # this one's: other threads of the process connect too
            attempts.append(time.monotonic())
        return connect(conninfo, *args, **kwargs)

    monkeypatch.setattr(feed_cache.psycopg, "connect", counted)
    options = {"reconnect_after": (0.1, 0.1), "refused": RefusedStreak(0.6, 0.5)}
    if kind == "listener":
        made = feed_cache.FeedChanges(url, **options)
    else:
        made = feed_cache.FeedNotifier(url, **options)
    started = time.monotonic()
    made.start()
    try:
        time.sleep(2.2)
        early = [t for t in attempts if t - started < 0.6]
        later = [t for t in attempts if 0.8 <= t - started < 2.2]
        assert len(early) >= 3, attempts  # every ~0.1 s at first
        assert 2 <= len(later) <= 4, [round(t - started, 2) for t in attempts]  # every 0.5 s
        _alter(admin, role, "LOGIN")
        back = time.monotonic()
        if kind == "notifier":
            made.changed()
        while not (made.listening if kind == "listener" else made.sent):
            assert time.monotonic() - back < 1.5, "not back within the longer gap"
            time.sleep(0.02)
    finally:
        made.stop()
