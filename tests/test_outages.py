"""Database outages under write load, against a real PostgreSQL the test stops and starts.

The bounded version of bench/outage.py: one crash restart (`pg_ctl stop -m immediate`,
then start at once) and one 10 s outage (`-m fast`), with `cruddur serve` (2 workers of 4
threads) and 4 clients posting and 1 reading throughout.
"""

from __future__ import annotations

import threading
import time

import pytest
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


def _timed(call, give_up: float = 8.0):
    """call()'s answer and the seconds it took; (None, give_up) if it had not answered by
    then (it is left running: the test fails on that instead of hanging)."""
    answered: list = []
    started = time.monotonic()
    caller = threading.Thread(target=lambda: answered.append(call()), daemon=True)
    caller.start()
    caller.join(give_up)
    return (answered[0] if answered else None), time.monotonic() - started


def test_a_database_that_takes_queries_and_never_answers_is_an_outage(
    seeded_db: str, api_url: str, api_settings, mint
) -> None:
    # RDS Proxy in a failover, a server whose processes are stopped: TCP is accepted and
    # nothing comes back. Requests waited as long as the silence lasted (19 s and more),
    # /api/health answered 200 at the end of it, and no 503 came.
    from api_support import CheckedClient
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from test_post_confirmation import StallingProxy

    from cruddur.api import create_app
    from cruddur.config import Settings

    params = conninfo_to_dict(api_url)
    proxy = StallingProxy(params.get("host") or "127.0.0.1", int(params.get("port") or 5432))
    via_proxy = make_conninfo(api_url, host="127.0.0.1", port=str(proxy.port))
    settings = Settings.from_env(
        {
            "CRUDDUR_HOME": str(api_settings.home),  # mint's dev key pair
            "CONNECTION_URL": seeded_db,
            "CRUDDUR_API_CONNECTION_URL": via_proxy,
            "CRUDDUR_FEED_CACHE": "0",  # every read reaches the database
        }
    )
    app = create_app(settings)
    api = CheckedClient(app)
    token = mint()
    try:
        assert api.get("/api/activities/home").status_code == 200
        proxy.stalled.set()
        cut, waited = _timed(lambda: api.get("/api/activities/home"))
        assert waited < 5.0, waited  # the bound on any request in an outage
        first_cut = waited
        assert cut.status_code == 503 and cut.headers["Retry-After"] == "1"
        write, waited = _timed(
            lambda: api.post("/api/activities", json={"message": "x", "ttl": "1-day"}, token=token)
        )
        assert waited < 5.0 and write.status_code == 503, waited
        time.sleep(2.5)  # the probe's connect (2 s) has failed by now: an outage
        for path in ("/api/health", "/api/activities/home", "/api/activities/@andrewbrown"):
            answer, waited = _timed(lambda path=path: api.get(path))
            assert waited < 1.0 and answer.status_code == 503, (path, waited)
        proxy.stalled.clear()
        back = time.monotonic()
        while api.get("/api/health").status_code != 200:
            assert time.monotonic() - back < 5.0, "not serving again"
            time.sleep(0.05)
        resumed = time.monotonic() - back
        print(f"stalled: first 503 after {first_cut:.2f} s; serving again {resumed:.2f} s after")
        assert resumed <= BACK_WITHIN + 0.5
        assert api.get("/api/activities/home").status_code == 200
    finally:
        app.extensions["cruddur.feed_cache"].close()
        app.extensions["cruddur.db"].close()
        proxy.close()
