"""The database black-holed, not stopped: packets dropped, no RST, no FIN.

A stopped server refuses or resets connections at once (tests/test_outages.py); a
network partition, or an RDS host that vanishes mid-failover, answers nothing, and
without client-side bounds libpq waits in recv until the kernel gives up (minutes).
Here the cluster is reachable only through a veth pair into a network namespace; the
test black-holes that path for a few seconds under `cruddur serve` with its usual
settings, with writes in flight (waiting on a table lock, their queries sent and
acknowledged: idle on the wire) and new requests arriving, then restores it.
"""

from __future__ import annotations

import socket
import time

import psycopg
import pytest
from blackhole_support import IsolatedPath, start_in_namespace, why_no_namespaces
from outage_support import (
    BACK_WITHIN,
    LONGEST_WAIT,
    Cluster,
    Load,
    Outage,
    dev_token,
    stored_counts,
)
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from server_support import Served

from cruddur.api.db import api_conninfo
from cruddur.config import PoolSettings
from cruddur.db.dead_peer import (
    CLI_DEAD_PEER_BOUNDS,
    CLI_TCP_USER_TIMEOUT_MS,
    KEEPALIVES_COUNT,
    KEEPALIVES_IDLE,
    KEEPALIVES_INTERVAL,
    TCP_USER_TIMEOUT_MS,
    with_dead_peer_bounds,
)
from cruddur.ops.connections import database_db, server_db
from cruddur.ops.migrations import runner
from cruddur.targets import Target

# One namespace and veth pair at a time: conftest's ONE_WORKER_MODULES runs the module
# on one worker (pytest 9 ignores this mark; it says the same to pytest-xdist's own ways).
pytestmark = pytest.mark.xdist_group("blackhole")

HOLE_SECONDS = 7.0  # longer than the 5 s no request may wait
ANSWER_ONCE_KNOWN = 1.0  # seconds: a 503 within this once the outage has been found
# Seconds from the black hole to the outage found: tcp_user_timeout (2 s) and a probe
# against a black-holed SYN (2 s, libpq's smallest connect_timeout), within the 5 s no
# request may wait (4.51 s seen in a CI run: 4.5 s left no margin for a loaded machine).
FOUND_WITHIN = LONGEST_WAIT


@pytest.fixture(scope="module")
def isolated_cluster(tmp_path_factory):
    """The cluster behind its path, shared by the module's tests (one worker runs them
    all, one after the other: conftest's ONE_WORKER_MODULES); each test restores the path
    and writes rows of its own load's tag."""
    reason = why_no_namespaces()
    if reason is not None:
        pytest.skip(reason)
    path = IsolatedPath().create()
    cluster = Cluster(tmp_path_factory.mktemp("blackhole") / "db")
    try:
        cluster.create()  # set up and loaded on 127.0.0.1, then moved behind the path
        cluster.server.stop("fast")
        url = start_in_namespace(cluster.server, path)
        yield path, url
    finally:
        if path.holed:
            path.restore()
        cluster.remove()
        path.remove()


def test_a_black_holed_database_is_answered_503_within_bounds(isolated_cluster, tmp_path):
    path, url = isolated_cluster
    home = tmp_path / "home"
    served = Served(
        "--workers", "2", "--threads", "4", env={"CONNECTION_URL": url, "CRUDDUR_HOME": str(home)}
    )
    outage = Outage("black hole", HOLE_SECONDS)
    try:
        served.wait_healthy()
        load = Load(served.port, dev_token(home), writers=3, readers=3, timeout=12.0)
        with load, psycopg.connect(url) as admin:
            time.sleep(1.0)
            # The writers' INSERTs wait on this lock: sent and acknowledged, a result awaited.
            admin.execute("LOCK TABLE activities IN SHARE ROW EXCLUSIVE MODE")
            time.sleep(0.5)
            path.black_hole()
            outage.down = time.monotonic()
            time.sleep(HOLE_SECONDS)
            path.restore()
            outage.back = time.monotonic()
            admin.rollback()
            time.sleep(3.0)
            outage.calls = list(load.calls)
        outage.counts = stored_counts(url, load.tag)
    finally:
        if path.holed:
            path.restore()
        output = served.stop()
    print(outage.summary())
    for call in sorted(outage.calls, key=lambda c: c.started):
        if call.seconds > 0.5:
            print(
                f"  {call.kind} {call.status} started {call.started - outage.down:+.2f} s, "
                f"waited {call.seconds:.2f} s"
            )
    assert "Traceback" not in output
    slow = [c for c in outage.calls if c.seconds > LONGEST_WAIT or c.status == 0]
    assert not slow, f"{outage.summary()}: {len(slow)} waited over {LONGEST_WAIT} s"
    during = [c for c in outage.calls if outage.down <= c.started < outage.back]
    # (A success: a feed page from the cache's copy, within its 1 s bound.)
    wrong = [c for c in during if not ((c.status == 503 and c.retry_after) or c.ok)]
    assert not wrong, f"{outage.summary()}: {len(wrong)} not a 503 with Retry-After"
    # Each worker finds the outage (its first 503s, after tcp_user_timeout and a probe)
    # within FOUND_WITHIN of its first request meeting it: a worker that no request
    # reached until later finds it later (all six clients waiting on the other worker's
    # requests: found 5.65 s after the hole, by requests that waited 2.0 s); once both
    # have, the rest are answered at once.
    first_wave = [c for c in during if c.status == 503 and c.seconds > ANSWER_ONCE_KNOWN]
    slow_to_find = [c for c in first_wave if c.ended - max(c.started, outage.down) > FOUND_WITHIN]
    assert not slow_to_find, f"{outage.summary()}: {len(slow_to_find)} found it too late"
    found = max((c.ended for c in first_wave), default=outage.down)
    late = [c for c in during if c.started > found and c.seconds > ANSWER_ONCE_KNOWN]
    assert not late, f"{outage.summary()}: {len(late)} slower than {ANSWER_ONCE_KNOWN} s"
    first = outage.first_ok_after_back
    assert first is not None and first <= BACK_WITHIN, outage.summary()
    failed = outage.failed_after_recovery
    assert not failed, f"{outage.summary()}: {len(failed)} failed after recovery"
    assert not outage.lost, f"{outage.summary()}. Lost: {outage.lost[:5]}"
    assert not outage.doubled, f"{outage.summary()}. Doubled: {outage.doubled[:5]}"


def _wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listening on {port}"
            time.sleep(0.05)


def test_the_api_bounds_every_connection_unless_the_url_says_otherwise() -> None:
    url = "postgresql://u:p@db.example:5432/cruddur?tcp_user_timeout=9000&keepalives_idle=30"
    given = conninfo_to_dict(api_conninfo(url))
    assert given["tcp_user_timeout"] == "9000" and given["keepalives_idle"] == "30"
    assert given["keepalives"] == "1"
    assert given["keepalives_interval"] == str(KEEPALIVES_INTERVAL)
    assert given["keepalives_count"] == str(KEEPALIVES_COUNT)
    for pooled in (False, True):
        plain = conninfo_to_dict(api_conninfo("postgresql://u@db.example/cruddur", pooled))
        assert plain["tcp_user_timeout"] == str(TCP_USER_TIMEOUT_MS)
        assert plain["keepalives_idle"] == str(KEEPALIVES_IDLE)
    assert with_dead_peer_bounds("not a conninfo ===") == "not a conninfo ==="


def _bounds_in_use(conn: psycopg.Connection) -> dict[str, str]:
    """The dead-peer parameters a live connection was made with (libpq's own view)."""
    wanted = set(CLI_DEAD_PEER_BOUNDS)
    return {
        option.keyword.decode(): (option.val or b"").decode()
        for option in conn.pgconn.info
        if option.keyword.decode() in wanted
    }


def test_the_clis_connections_are_bounded_too(seeded_db: str) -> None:
    # A `db migrate` whose database vanished mid-statement waited for ever: the CLI's
    # connections had no bound at all. Each way the CLI connects now carries its own,
    # gentler ones (the URL's own still win).
    expected = {k: str(v) for k, v in CLI_DEAD_PEER_BOUNDS.items()}
    target = Target(seeded_db, "CONNECTION_URL")
    with database_db(target, PoolSettings()) as db, db.connection() as conn:
        assert _bounds_in_use(conn) == expected
    with server_db(target, PoolSettings()) as db, db.connection() as conn:
        assert _bounds_in_use(conn) == expected
    with runner.connect(seeded_db) as conn:
        assert _bounds_in_use(conn) == expected
    with runner.connect(make_conninfo(seeded_db, keepalives_idle=60)) as conn:
        assert _bounds_in_use(conn)["keepalives_idle"] == "60"
    assert CLI_TCP_USER_TIMEOUT_MS > TCP_USER_TIMEOUT_MS  # the API's stay the tighter


def test_a_worker_started_into_a_black_hole_answers_503_then_serves(isolated_cluster, tmp_path):
    # The connect path: the first request opens the pool, its SYN black-holed; libpq's
    # connect_timeout (CRUDDUR_CONNECT_TIMEOUT) bounds that attempt.
    path, url = isolated_cluster
    home = tmp_path / "home"
    path.black_hole()
    served = Served("--workers", "1", env={"CONNECTION_URL": url, "CRUDDUR_HOME": str(home)})
    try:
        _wait_listening(served.port)  # no request yet: the first one opens the pool
        load = Load(served.port, dev_token(home), writers=2, readers=2, timeout=12.0)
        with load:
            time.sleep(HOLE_SECONDS)
            path.restore()
            back = time.monotonic()
            time.sleep(3.0)
            calls = list(load.calls)
    finally:
        if path.holed:
            path.restore()
        output = served.stop()
    slowest = max(c.seconds for c in calls)
    waits = ", ".join(f"{c.seconds:.2f}" for c in calls if c.seconds > 0.5)
    print(f"{len(calls)} requests, slowest {slowest:.2f} s; waits over 0.5 s: {waits}")
    assert "Traceback" not in output
    slow = [c for c in calls if c.seconds > LONGEST_WAIT or c.status == 0]
    assert not slow, f"slowest {slowest:.2f} s: {len(slow)} waited over {LONGEST_WAIT} s"
    assert all(c.ok or (c.status == 503 and c.retry_after) for c in calls if c.started < back)
    assert not [c for c in calls if c.started >= back + BACK_WITHIN and not c.ok]
