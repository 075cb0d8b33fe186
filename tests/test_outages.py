"""Database outages under write load, against a real PostgreSQL the test stops and starts.

The bounded version of bench/outage.py: one crash restart (`pg_ctl stop -m immediate`,
then start at once) and one 10 s outage (`-m fast`), with `cruddur serve` (2 workers of 4
threads) and 4 clients posting and 1 reading throughout.
"""

from __future__ import annotations

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
