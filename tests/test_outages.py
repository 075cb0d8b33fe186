"""Database outages under write load, against a real PostgreSQL the test stops and starts.

The bounded version of bench/outage.py: one crash restart (`pg_ctl stop -m immediate`,
then start at once) and one 10 s outage (`-m fast`), with `cruddur serve` (2 workers of 4
threads) and 4 clients posting and 1 reading throughout.
"""

from __future__ import annotations

import time

import pytest
from helpers import finished_within
from outage_support import BACK_WITHIN, Cluster, Load, Outage, dev_token, run_outage
from server_support import Served


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path / "db")
    url = cluster.create()
    yield cluster, url
    cluster.remove()


def _details(calls) -> str:
    return "; ".join(f"{c.kind} {c.status} in {c.seconds:.2f} s" for c in calls[:10])


def _check(outage: Outage) -> None:
    summary = outage.summary()
    assert not outage.too_slow, f"{summary}. Waited too long: {_details(outage.too_slow)}"
    assert len(outage.during) >= 3, f"the load barely met the outage: {summary}"
    wrong = outage.wrong_while_down
    assert not wrong, f"{summary}. While down, not a prompt 503: {_details(wrong)}"
    first = outage.first_ok_after_back
    assert first is not None and first <= BACK_WITHIN, summary
    failed = outage.failed_after_recovery
    assert not failed, f"{summary}. Failed after recovery: {_details(failed)}"
    assert not outage.lost, f"{summary}. Lost: {outage.lost[:5]}"
    assert not outage.doubled, f"{summary}. Doubled: {outage.doubled[:5]}"


def test_a_crash_restart_and_a_10_s_outage_under_write_load(cluster, tmp_path) -> None:
    db, url = cluster
    home = tmp_path / "home"
    served = Served(
        "--workers", "2", "--threads", "4", env={"CONNECTION_URL": url, "CRUDDUR_HOME": str(home)}
    )
    try:
        served.wait_healthy()
        with Load(served.port, dev_token(home)) as load:
            crash = run_outage(db, url, load, "immediate", 0)
            long = run_outage(db, url, load, "fast", 10, before=1)
    finally:
        output = served.stop()
    print(crash.summary(), long.summary(), sep="\n")
    assert "Traceback" not in output
    _check(crash)
    _check(long)


def test_health_finds_a_database_that_takes_queries_and_never_answers(
    seeded_db: str, api_url: str, api_settings
) -> None:
    # RDS Proxy in a failover, a stopped server, a stalled proxy: TCP is acknowledged and
    # nothing comes back. /api/health waited as long as the silence lasted and then said
    # 200, so a load balancer never saw the outage, and no request got a prompt 503.
    from api_support import CheckedClient
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from test_post_confirmation import StallingProxy

    from cruddur.api import create_app
    from cruddur.config import Settings

    params = conninfo_to_dict(api_url)
    proxy = StallingProxy(params.get("host") or "127.0.0.1", int(params.get("port") or 5432))
    settings = Settings.from_env(
        {
            "CRUDDUR_HOME": str(api_settings.home),
            "CONNECTION_URL": seeded_db,
            "CRUDDUR_API_CONNECTION_URL": make_conninfo(
                api_url, host="127.0.0.1", port=str(proxy.port)
            ),
        }
    )
    app = create_app(settings)
    api = CheckedClient(app)
    try:
        assert api.get("/api/health").status_code == 200
        proxy.stalled.set()
        (health,), waited = finished_within(lambda: api.get("/api/health"), 8.0)
        assert waited < 5.0, waited  # the bound on any request in an outage
        assert health.status_code == 503 and health.headers["Retry-After"] == "1"
        first = waited
        time.sleep(2.5)  # the probe health started cannot connect (2 s): an outage
        slowest = 0.0
        for path in ("/api/activities/home", "/api/activities/@andrewbrown", "/api/health"):
            (answer,), waited = finished_within(lambda path=path: api.get(path), 8.0)
            assert waited < 1.0 and answer.status_code == 503, (path, waited)
            slowest = max(slowest, waited)
        proxy.stalled.clear()
        back = time.monotonic()
        while api.get("/api/health").status_code != 200:
            assert time.monotonic() - back < 5.0, "not serving again"
            time.sleep(0.05)
        print(
            f"stalled: health's 503 after {first:.2f} s; then 503s in {slowest * 1000:.0f} ms "
            f"at most; back {time.monotonic() - back:.2f} s"
        )
        assert api.get("/api/activities/home").status_code == 200
    finally:
        app.extensions["cruddur.feed_cache"].close()
        app.extensions["cruddur.db"].close()
        proxy.close()


def test_a_server_gone_silent_while_every_connection_is_lent_is_found(
    seeded_db: str, api_url: str
) -> None:
    # The pool's one connection waits on a server that takes queries and never answers
    # (frozen, a failover): a request waiting for a connection waited the pool's whole
    # timeout (10 s) for a "busy" 503, and no probe ever ran, so the worker never found
    # the outage while its threads were all held so. The probe a wait of 1 s starts
    # waits CRUDDUR_CONNECT_TIMEOUT (2 s here): found 3 s into the wait.
    import threading

    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from test_post_confirmation import StallingProxy

    from cruddur.config import PoolSettings
    from cruddur.db import Db
    from cruddur.db.reachability import DatabaseUnavailable

    params = conninfo_to_dict(api_url)
    proxy = StallingProxy(params.get("host") or "127.0.0.1", int(params.get("port") or 5432))
    url = make_conninfo(api_url, host="127.0.0.1", port=str(proxy.port))
    settings = PoolSettings(min_size=1, max_size=1, connect_timeout=2)
    db = Db(url, settings, fail_fast=True).open()
    try:
        assert db.query_value("SELECT 1") == 1
        proxy.stalled.set()
        holder = threading.Thread(
            target=lambda: db.query_value("SELECT 1"), daemon=True
        )  # holds the one connection, on the silent server
        holder.start()
        time.sleep(0.3)
        (raised,), waited = finished_within(lambda: db.query_value("SELECT 2"), 15.0)
        assert isinstance(raised, DatabaseUnavailable), raised
        assert waited < 5.0, waited  # the bound on any request in an outage
    finally:
        proxy.close()
        db.close()


def test_a_sound_server_slow_to_connect_is_not_taken_for_one_gone(api_url: str) -> None:
    # The probe a wait for a connection starts took 2 s at most: a server that lets
    # connections in after 2.5 s (well within CRUDDUR_CONNECT_TIMEOUT) was marked down
    # under nothing but load, and every request then got a 503 for good.
    import threading

    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from test_post_confirmation import StallingProxy

    from cruddur.config import PoolSettings
    from cruddur.db import Db

    params = conninfo_to_dict(api_url)
    proxy = StallingProxy(
        params.get("host") or "127.0.0.1", int(params.get("port") or 5432), first_reply_delay=2.5
    )
    url = make_conninfo(api_url, host="127.0.0.1", port=str(proxy.port))
    db = Db(url, PoolSettings(min_size=1, max_size=1), fail_fast=True).open()
    try:
        holder = threading.Thread(target=lambda: db.query_value("SELECT pg_sleep(3.5)"))
        holder.start()
        time.sleep(0.3)
        # Waiting past 1 s: a probe (its connect 2.5 s), while the holder still holds.
        assert db.query_value("SELECT 2") == 2  # after the holder, as ever
        holder.join()
        time.sleep(1.0)  # past any probe started
        assert not db.reachability.down
    finally:
        proxy.close()
        db.close()
