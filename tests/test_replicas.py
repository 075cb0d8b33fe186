"""Reads from a real streaming replica: read-your-writes, lag, failure, and proof that the
replica really serves them (README, "Scaling out")."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from api_support import CheckedClient
from helpers import ROOT, cli, run
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from replica_support import ReplicaPair, activity_scans
from served import serve

from cruddur.api import create_app
from cruddur.config import Settings
from cruddur.db.replication import NOT_LOOKED_AT, LagClock, PrimarySample, ReplicaState, lag_words
from cruddur.dev_keys import DevKeys
from cruddur.urls import parse, with_database


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaPair]:
    made = ReplicaPair(tmp_path_factory.mktemp("replica-pair")).create()
    yield made
    made.remove()


def _app(pair: ReplicaPair, home: Path, **env: str):
    settings = Settings.from_env(
        {
            "CRUDDUR_HOME": str(home),
            "CONNECTION_URL": pair.primary_url,
            "READER_CONNECTION_URL": pair.replica_url,
            **env,
        }
    )
    app = create_app(settings)
    token = DevKeys(settings.home).mint(settings.auth, "MOCK-andrewbrown", expires_in=3600)
    return app, CheckedClient(app), {"Authorization": f"Bearer {token}"}


def _close(app) -> None:
    # Ending the sessions flushes their statistics into pg_stat_database.
    app.extensions["cruddur.reads"].close()
    app.extensions["cruddur.db"].close()
    reader = app.extensions["cruddur.reads"].reader
    if reader is not None:
        reader.close()
    time.sleep(0.3)


def _wait_until(predicate, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _write_and_read_it_back(
    api: CheckedClient, auth: dict[str, str], message: str
) -> tuple[str, dict[str, str]]:
    """A crud posted, then read with its X-Read-After: (its uuid, that header)."""
    created = api.post("/api/activities", json={"message": message, "ttl": "1-day"}, headers=auth)
    assert created.status_code == 201
    uuid = created.get_json()["uuid"]
    after = {"X-Read-After": created.headers["X-Read-After"]}
    assert api.get(f"/api/activities/{uuid}", headers=after).status_code == 200
    return uuid, after


def _assert_skipped_saying(caplog: pytest.LogCaptureFixture, why: str) -> None:
    skipped = [r.getMessage() for r in caplog.records if "replica skipped" in r.getMessage()]
    assert any(why in line for line in skipped), skipped


def _assert_own_writes_seen(
    api: CheckedClient, auth: dict[str, str], label: str, *, attempts: int
) -> None:
    """Each of `attempts` writes is the first of its writer's next home page."""
    for attempt in range(attempts):
        uuid, after = _write_and_read_it_back(api, auth, f"{label} {attempt}")
        feed = api.get("/api/activities/home", headers=after).get_json()
        assert feed[0]["uuid"] == uuid, f"attempt {attempt}: own write not seen"


def _in_use(api: CheckedClient) -> bool:
    return api.get("/api/health").get_json()["replica"]["in_use"]


def _replica_health(api: CheckedClient) -> dict:
    """/api/health's replica part; {} while health is not a 200 (its primary restarting)."""
    health = api.get("/api/health")
    return health.get_json()["replica"] if health.status_code == 200 else {}


def _looks_while_kept_off(api: CheckedClient, router, *, seconds: float) -> list[ReplicaState]:
    """The watcher's looks over `seconds` (within a 2 s limit: the clock's own lag stays
    under it), each while /api/health says the replica is not in use."""
    looks: list[ReplicaState] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert not _in_use(api), router.describe(router.state)
        state = router.state
        if state.checked_at and (not looks or looks[-1] is not state):
            looks.append(state)
        time.sleep(0.02)
    assert looks, "the watcher made no look"
    return looks


def test_a_healthy_replica_serves_the_reads(pair: ReplicaPair, tmp_path: Path) -> None:
    pair.wait_caught_up()
    # Without the feed cache, each home request is a read (with it, a few rebuilds are).
    app, api, _ = _app(pair, tmp_path, CRUDDUR_FEED_CACHE="0")
    before = activity_scans(pair.replica_url), activity_scans(pair.primary_url)
    try:
        _wait_until(lambda: _in_use(api))
        for _ in range(50):
            assert api.get("/api/activities/home").status_code == 200
            assert api.get("/api/activities/@andrewbrown").status_code == 200
    finally:
        _close(app)
    on_replica = activity_scans(pair.replica_url) - before[0]
    on_primary = activity_scans(pair.primary_url) - before[1]
    assert on_replica >= 100, (on_replica, on_primary)
    assert on_primary == 0, (on_replica, on_primary)


def test_health_says_unknown_before_a_workers_first_look_not_unreachable(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # A worker's first /api/health said "reachable": false for a healthy replica (the
    # watcher starts on first use): an alarm on it went off after every deploy.
    app, api, _ = _app(pair, tmp_path)
    try:
        first = api.get("/api/health").get_json()["replica"]
        assert first["reachable"] is None and first["in_use"] is False
        _wait_until(lambda: _in_use(api))
        assert api.get("/api/health").get_json()["replica"]["reachable"] is True
    finally:
        _close(app)


def test_a_replica_that_stops_answering_costs_a_read_seconds_not_for_ever(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # A replica whose processes still take bytes but never answer (stopped, or behind a
    # pooler that queues the query) held reads already sent to it for ever: a few such
    # reads held every thread of a worker, health checks and writes included.
    pair.wait_caught_up()
    app, api, _ = _app(pair, tmp_path, CRUDDUR_FEED_CACHE="0")
    try:
        _wait_until(lambda: _in_use(api))
        assert api.get("/api/activities/@andrewbrown").status_code == 200  # a connection open
        reader = ThreadPoolExecutor(1)  # a read that hangs fails the test, not the run
        pair.freeze_replica(True)
        try:
            for path in ("/api/activities/@andrewbrown", "/api/activities/home"):
                started = time.monotonic()
                response = reader.submit(api.get, path).result(timeout=10)
                waited = time.monotonic() - started
                assert response.status_code == 200, response.get_data(as_text=True)
                # The read's deadline (2 s), then the primary: a bound for the user.
                assert waited < 5, (path, waited)
            assert not _in_use(api)  # skipped until the watcher finds it well again
        finally:
            pair.freeze_replica(False)  # also lets a hung read end, and its thread
            reader.shutdown()
        _wait_until(lambda: _in_use(api), seconds=30)
    finally:
        _close(app)


def test_behind_a_pooler_a_read_after_a_write_on_a_replica_that_stops_answering_is_bounded(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # Behind a transaction pooler a read with X-Read-After is one transaction on the
    # replica, and its BEGIN went out with no deadline: a replica that stopped answering
    # held it (and every thread that sent such a read) for 60 s and more.
    from pgbouncer_support import PgBouncer

    pair.wait_caught_up()
    bouncer = PgBouncer(pair.replica_url, pool_size=4)
    try:
        app, api, auth = _app(
            pair, tmp_path, READER_CONNECTION_URL=bouncer.url_for(pair.replica_url),
            CRUDDUR_POOLER="transaction", CRUDDUR_FEED_CACHE="0",
        )  # fmt: skip
        try:
            _wait_until(lambda: _in_use(api))
            created = api.post(
                "/api/activities", json={"message": "frozen", "ttl": "1-day"}, headers=auth
            )
            after = {"X-Read-After": created.headers["X-Read-After"]}
            path = f"/api/activities/{created.get_json()['uuid']}"
            _wait_until(lambda: api.get(path, headers=after).status_code == 200)
            reader = ThreadPoolExecutor(1)  # a read that hangs fails the test, not the run
            pair.freeze_replica(True)
            try:
                started = time.monotonic()
                response = reader.submit(api.get, path, headers=after).result(timeout=30)
                waited = time.monotonic() - started
                assert response.status_code == 200, response.get_data(as_text=True)
                assert waited < 5, waited  # the read's deadline (2 s), then the primary
            finally:
                pair.freeze_replica(False)
                reader.shutdown()
        finally:
            _close(app)
    finally:
        bouncer.stop()


def test_a_primary_that_stops_answering_leaves_the_replica_serving_reads(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # The watcher sampled the primary's write position with no bound: a primary whose
    # processes still take bytes but never answer held the watcher, its last look aged
    # out, and reads the healthy replica could serve went to the hung primary (~43 s,
    # then 503s). Without the primary, the replica's own estimate stands.
    pair.wait_caught_up()
    app, api, _ = _app(pair, tmp_path, CRUDDUR_FEED_CACHE="0")
    router = app.extensions["cruddur.reads"]
    try:
        _wait_until(lambda: _in_use(api))
        reader = ThreadPoolExecutor(1)  # a read that hangs fails the test, not the run
        waits: list[float] = []
        pair.freeze_primary(True)
        try:
            deadline = time.monotonic() + 12  # past the lag limit (5 s) twice over
            while time.monotonic() < deadline:
                started = time.monotonic()
                response = reader.submit(api.get, "/api/activities/@andrewbrown").result(timeout=30)
                waits.append(time.monotonic() - started)
                assert response.status_code == 200, response.get_data(as_text=True)
                assert waits[-1] < 3, (waits, router.describe(router.state))
                time.sleep(0.2)
        finally:
            pair.freeze_primary(False)  # also lets a hung read end, and its thread
            reader.shutdown()
        assert router.state.fresh(router.max_lag, time.monotonic())
    finally:
        _close(app)


def test_a_write_just_before_the_primary_went_away_keeps_the_replica_off_until_replayed(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # The watcher's lag clock knows only the primary's positions it sampled: a write made
    # after its last sample, the primary gone before the next, left it at 0 s behind while
    # the replica held that write unreplayed, and reads served it as missing for as long
    # as the primary was away. Without the primary, the replica's own estimate stands.
    pair.wait_caught_up()
    app, api, auth = _app(pair, tmp_path, CRUDDUR_FEED_CACHE="0")
    router = app.extensions["cruddur.reads"]
    try:
        _wait_until(lambda: _in_use(api))
        pair.pause_replay(True)
        frozen = False
        try:
            look = router.state  # right after a look, so the next one finds the primary gone
            deadline = time.monotonic() + 5
            while router.state is look:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            written = api.post(
                "/api/activities", json={"message": "just before", "ttl": "1-day"}, headers=auth
            )
            assert written.status_code == 201
            with psycopg.connect(pair.primary_url, autocommit=True) as primary:
                end = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            with psycopg.connect(pair.replica_url, autocommit=True) as replica:
                received = "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn"
                _wait_until(lambda: replica.execute(received, [str(end)]).fetchone()[0], 5)
            pair.freeze_primary(True)
            frozen = True
            # Its estimate (the age of the last transaction it replayed) passes the limit.
            _wait_until(lambda: not router.state.fresh(router.max_lag), router.max_lag + 5)
        finally:
            if frozen:
                pair.freeze_primary(False)
            pair.pause_replay(False)
        pair.wait_caught_up()
        _wait_until(lambda: _in_use(api))
    finally:
        _close(app)


def test_a_replica_restarted_while_the_primary_is_down_stays_in_use(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # After a restart its received position is its WAL segment's start, behind what it
    # replayed, and it has replayed no transaction since: read as "WAL waits, how far
    # behind not known", it was kept off though nothing waited, and reads went to the
    # primary that was down.
    pair.wait_caught_up()
    pair.primary.stop()
    try:
        pair.stop_replica("fast")
        pair.start_replica()
        app, api, _ = _app(pair, tmp_path, CRUDDUR_FEED_CACHE="0")
        router = app.extensions["cruddur.reads"]
        try:
            api.get("/api/activities/@andrewbrown")  # the worker's first read starts its watcher
            _wait_until(lambda: router.state.fresh(router.max_lag), 10)
            assert router.state.lag_seconds == 0.0, router.describe(router.state)
            # The primary is down: the replica answers the reads.
            assert api.get("/api/activities/@andrewbrown").status_code == 200
        finally:
            _close(app)
    finally:
        pair.start_primary()
        pair.wait_caught_up()


def test_the_pairs_replica_follows_its_primary_to_another_port(pair: ReplicaPair) -> None:
    # The harness's own check. The primary's port, taken while it was down (by any
    # client socket: it came from the ephemeral range), moved it to another at its next
    # start; the replica kept asking the old one, looked caught up until the primary
    # wrote again, and every later test's wait for it timed out (CI, 6 tests).
    old_port = int(parse(pair.primary_url)["port"])
    pair.primary.stop()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", old_port))
        taken.listen()
        pair.start_primary()
    assert int(parse(pair.primary_url)["port"]) != old_port
    with psycopg.connect(pair.primary_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS moved_marker (at timestamptz)")
        conn.execute("DROP TABLE moved_marker")
    pair.wait_caught_up()


def test_a_reply_read_with_its_position_sees_itself_every_time(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    pair.set_apply_delay(10)
    app, api, auth = _app(pair, tmp_path)
    replica_before = activity_scans(pair.replica_url)
    seen, stale_without_header, parent = 0, 0, None
    try:
        _wait_until(lambda: _in_use(api))
        for attempt in range(1000):
            if attempt % 50 == 0:  # a new parent before the replies outgrow one page
                created = api.post(
                    "/api/activities", json={"message": f"parent {attempt}", "ttl": "1-day"},
                    headers=auth,
                )  # fmt: skip
                parent = created.get_json()["uuid"]
            reply = api.post(
                f"/api/activities/{parent}/reply", json={"message": f"r{attempt}"}, headers=auth
            )
            assert reply.status_code == 201
            position = reply.headers["X-Read-After"]
            time.sleep(random.uniform(0, 0.02))  # sometimes the replica catches up first
            shown = api.get(f"/api/activities/{parent}", headers={"X-Read-After": position})
            assert shown.status_code == 200
            uuids = [r["uuid"] for r in shown.get_json()["replies"]]
            assert reply.get_json()["uuid"] in uuids, f"attempt {attempt}: own reply not seen"
            seen += 1
        # The same without the header does read stale: the delay above is real.
        for attempt in range(20):
            reply = api.post(
                f"/api/activities/{parent}/reply", json={"message": f"s{attempt}"}, headers=auth
            )
            shown = api.get(f"/api/activities/{parent}")
            if reply.get_json()["uuid"] not in [r["uuid"] for r in shown.get_json()["replies"]]:
                stale_without_header += 1
    finally:
        _close(app)
        pair.set_apply_delay(0)
    assert seen == 1000
    assert stale_without_header > 0
    # Some of the 1,000 reads were the replica's (the others went to the primary).
    assert activity_scans(pair.replica_url) - replica_before > 50


def test_a_write_with_synchronous_commit_off_is_read_by_its_writer(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # A review: the position was pg_current_wal_lsn(), the WAL written out; with
    # synchronous_commit off the commit's record may not be yet, and a replica that had
    # replayed to the position was taken as having the write: the writer's reads 404.
    pair.wait_caught_up()
    settings = {"synchronous_commit": "off", "wal_writer_delay": "10s"}
    with psycopg.connect(pair.primary_url, autocommit=True) as conn:
        for name, value in settings.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(
                sql.Identifier(name), sql.Literal(value)))  # fmt: skip
        conn.execute("SELECT pg_reload_conf()")
    app, api, auth = _app(pair, tmp_path, CRUDDUR_FEED_CACHE="0")
    try:
        _wait_until(lambda: _in_use(api))
        for attempt in range(5):
            _write_and_read_it_back(api, auth, f"async {attempt}")
    finally:
        _close(app)
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            for name in settings:
                conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
            conn.execute("SELECT pg_reload_conf()")


def test_a_replica_past_the_lag_limit_is_skipped_then_used_again(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    app, api, auth = _app(pair, tmp_path, CRUDDUR_REPLICA_MAX_LAG="1")
    try:
        _wait_until(lambda: _in_use(api))
        pair.pause_replay(True)
        # Lag grows only while there is WAL waiting to be replayed.
        api.post("/api/activities", json={"message": "while paused", "ttl": "1-hour"}, headers=auth)
        _wait_until(lambda: not _in_use(api))
        replica_before = activity_scans(pair.replica_url)
        feed = api.get("/api/activities/home").get_json()
        assert feed[0]["message"] == "while paused"  # the primary's rows: not stale
        _close(app)
        assert activity_scans(pair.replica_url) == replica_before
        app, api, auth = _app(pair, tmp_path, CRUDDUR_REPLICA_MAX_LAG="1")
        pair.pause_replay(False)
        _wait_until(lambda: _in_use(api))
    finally:
        pair.pause_replay(False)
        _close(app)


def test_a_replica_replaying_late_reads_at_least_as_far_behind_as_it_is(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # The lag counted from the first sample of the primary past what the replica replayed,
    # but what it had not replayed may have been written just after the sample before, a
    # look earlier: a replica replaying 5.8 s late read as 4.8 to 5.8 s behind, and
    # served reads more than the 5 s limit stale (17 of 54).
    delay = 3.0
    pair.wait_caught_up()
    app, api, _ = _app(pair, tmp_path, CRUDDUR_REPLICA_MAX_LAG="2.7")
    router = app.extensions["cruddur.reads"]
    stop = threading.Event()

    def write_on() -> None:
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO lag_marker VALUES (now())")
                stop.wait(0.05)

    writer = threading.Thread(target=write_on)
    try:
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS lag_marker (at timestamptz)")
        _wait_until(lambda: _in_use(api))
        pair.set_apply_delay(int(delay * 1000))
        writer.start()
        time.sleep(delay + 2)  # its lag has grown to the delay
        looks = _looks_while_kept_off(api, router, seconds=5)  # over the limit: skipped
        lags = [look.lag_seconds for look in looks]
        # What it has not replayed was written up to `delay` ago (less a write's 0.05 s).
        assert len(lags) >= 4 and all(lag is not None and lag >= delay - 0.1 for lag in lags), lags
        stop.set()
        writer.join()
        pair.set_apply_delay(0)
        pair.wait_caught_up()
        # Caught up with an idle primary: no lag.
        _wait_until(lambda: router.state.lag_seconds == 0.0 and _in_use(api))
    finally:
        stop.set()
        if writer.is_alive():
            writer.join()
        pair.set_apply_delay(0)
        _close(app)
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS lag_marker")


def test_reads_keep_succeeding_while_the_replica_stops_and_starts(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    app, api, _ = _app(pair, tmp_path)
    statuses: list[int] = []
    try:
        _wait_until(lambda: _in_use(api))

        def read_for(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                statuses.append(api.get("/api/activities/home").status_code)

        read_for(0.5)
        pair.stop_replica("fast")
        read_for(2)
        assert not _in_use(api)
        pair.start_replica()
        _wait_until(lambda: _in_use(api))
        read_for(0.5)
    finally:
        _close(app)
    assert statuses and set(statuses) == {200}


def test_a_page_says_it_varies_by_the_read_after_header(pair: ReplicaPair, tmp_path: Path) -> None:
    # A replica behind the write: the same URL answers without the write, or (sent its
    # X-Read-After) with it. Both may be stored by a shared cache, so the answer must name
    # the header in Vary, or a cache hands the stale one to the writer.
    pair.wait_caught_up()
    app, api, auth = _app(pair, tmp_path, CRUDDUR_REPLICA_MAX_LAG="60", CRUDDUR_FEED_CACHE="0")
    try:
        _wait_until(lambda: _in_use(api))
        pair.pause_replay(True)
        created = api.post(
            "/api/activities", json={"message": "vary", "ttl": "1-day"}, headers=auth
        )
        position = created.headers["X-Read-After"]
        stale = api.get("/api/activities/@andrewbrown")
        fresh = api.get("/api/activities/@andrewbrown", headers={"X-Read-After": position})
    finally:
        pair.pause_replay(False)
        _close(app)
    uuid = created.get_json()["uuid"]
    assert uuid not in [a["uuid"] for a in stale.get_json()]
    assert uuid in [a["uuid"] for a in fresh.get_json()]
    for answer in (stale, fresh):
        assert answer.headers["Cache-Control"].startswith("public")
        assert "X-Read-After" in answer.headers.getlist("Vary")
        assert "Origin" in answer.headers.getlist("Vary")
    not_modified = api.get(
        "/api/activities/@andrewbrown",
        headers={"X-Read-After": position, "If-None-Match": fresh.headers["ETag"]},
    )
    assert not_modified.status_code == 304
    assert "X-Read-After" in not_modified.headers.getlist("Vary")


def test_a_malformed_read_after_is_a_400(pair: ReplicaPair, tmp_path: Path) -> None:
    app, api, _ = _app(pair, tmp_path)
    try:
        shown = api.get("/api/activities/home", headers={"X-Read-After": "'; DROP TABLE--"})
        assert shown.status_code == 400
        assert shown.get_json()["error"] == "invalid_read_after"
    finally:
        _close(app)


def test_only_a_read_after_this_service_signed_is_taken(pair: ReplicaPair, tmp_path: Path) -> None:
    # Unsigned, any client could name a position no replica will ever replay: each such
    # read went to the primary (and past the kept first page), so anyone could put the
    # whole read load back on the primary.
    pair.wait_caught_up()
    key = {"CRUDDUR_READ_AFTER_KEY": "k" * 40}
    writer, api, auth = _app(pair, tmp_path / "writer", **key)
    try:
        _wait_until(lambda: _in_use(api))
        created = api.post(
            "/api/activities", json={"message": "signed", "ttl": "1-day"}, headers=auth
        )  # fmt: skip
        signed = created.headers["X-Read-After"]
        crud = f"/api/activities/{created.get_json()['uuid']}"
    finally:
        _close(writer)
    position, expiry, tag = signed.split(".")
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", position) and len(tag) == 22, signed
    assert 0 < int(expiry) - time.time() <= 9  # the web page's 8 s (5 s lag limit), rounded up
    # Another worker or instance with the same key takes it, and sees the write.
    same, same_api, _ = _app(pair, tmp_path / "same", **key)
    try:
        _wait_until(lambda: _in_use(same_api))
        shown = same_api.get(crud, headers={"X-Read-After": signed})
        assert shown.status_code == 200 and shown.get_json()["activity"]["message"] == "signed"
    finally:
        _close(same)

    primary_scans = activity_scans(pair.primary_url)
    later = int(expiry) + 3600
    major, minor = position.split("/")
    forged = [
        "FFFFFFFF/FFFFFFFF",  # the attack: a position no replica reaches
        f"FFFFFFFF/FFFFFFFF.{expiry}.{tag}",  # another position under a real signature
        f"{major}/{int(minor, 16) + 1:X}.{expiry}.{tag}",
        f"{position}.{later}.{tag}",  # a later expiry under the real signature
        f"{position}.{expiry}.{'A' * 22}",
        position,  # the position alone, as the header used to be
        f"{signed}A",
        f" {signed}.{tag}",
        "\u00e9" * 40,
    ]
    forger, forger_api, _ = _app(pair, tmp_path / "forger", **key)
    other_key, other_api, _ = _app(pair, tmp_path / "other", CRUDDUR_READ_AFTER_KEY="o" * 40)
    try:
        _wait_until(lambda: _in_use(forger_api) and _in_use(other_api))
        for path in ("/api/activities/home", crud, "/api/activities/@andrewbrown"):
            answers = [forger_api.get(path, headers={"X-Read-After": v}) for v in forged]
            # Signed with another key: not this service's (instances must share one).
            answers.append(other_api.get(path, headers={"X-Read-After": signed}))
            for value, answer in zip([*forged, "other key"], answers, strict=True):
                assert answer.status_code == 400, (path, value, answer.get_json())
                assert answer.get_json()["error"] == "invalid_read_after"
    finally:
        _close(forger)
        _close(other_key)
    assert activity_scans(pair.primary_url) == primary_scans  # none reached the primary


def test_a_read_after_past_its_window_counts_for_nothing(pair: ReplicaPair, tmp_path: Path) -> None:
    # One genuine value, replayed for ever, kept every home feed read off the kept first
    # page, and on the primary whenever the replica was out of use. Past its window (as
    # long as the web page sends it) a read with it is a read without it.
    pair.wait_caught_up()
    app, api, _ = _app(pair, tmp_path, CRUDDUR_READ_AFTER_KEY="k" * 40)
    signer = app.extensions["cruddur.reads"].signer
    position = "0/1"  # replayed long ago: the replica could serve it
    fresh, expired = signer.sign(position), signer.sign(position, now=time.time() - 3600)
    try:
        _wait_until(lambda: _in_use(api))
        # The first page is kept once the feed cache listens: before, the warm-up built it
        # twice, and those scans, counted late, were put down to the first reads counted.
        assert app.extensions["cruddur.feed_cache"].pages().changes.wait_listening(10)
        for value in (None, fresh, expired):  # each page once, before counting
            api.get("/api/activities/home", headers={"X-Read-After": value} if value else {})
        time.sleep(0.3)
        counts = {}
        for name, value in (("expired", expired), ("fresh", fresh), ("none", None)):
            before = activity_scans(pair.replica_url) + activity_scans(pair.primary_url)
            for _ in range(40):
                page = api.get(
                    "/api/activities/home", headers={"X-Read-After": value} if value else {}
                )
                assert page.status_code == 200, page.get_json()
            _close(app)  # the sessions' counts reach the statistics
            counts[name] = (
                activity_scans(pair.replica_url) + activity_scans(pair.primary_url) - before
            )
    finally:
        _close(app)
    assert counts["fresh"] >= 40, counts  # within its window: the database, every read
    # Past it: the kept first page, as without the header (a refresh of it at most).
    assert counts["expired"] <= counts["none"] + 2, counts


def test_the_workers_of_one_server_sign_alike(pair: ReplicaPair, tmp_path: Path) -> None:
    # Without CRUDDUR_READ_AFTER_KEY, `serve` makes one key for all its workers: a write
    # answered by one worker is read back through another.
    env = {"READER_CONNECTION_URL": pair.replica_url, "CRUDDUR_FEED_CACHE": "0"}
    with serve(pair.primary_url, tmp_path, "--workers", "2", env=env) as server:
        health = f"{server.base}/api/health"
        _wait_until(lambda: json.loads(urllib.request.urlopen(health).read())["replica"]["in_use"])
        auth = {"Authorization": f"Bearer {server.token('andrewbrown')}"}
        readers: set[int] = set()
        for attempt in range(200):
            body = json.dumps({"message": f"w{attempt}", "ttl": "1-day"}).encode()
            created = urllib.request.urlopen(
                urllib.request.Request(
                    f"{server.base}/api/activities", data=body, method="POST",
                    headers={**auth, "Content-Type": "application/json"},
                )
            )  # fmt: skip
            uuid = json.loads(created.read())["uuid"]
            read = urllib.request.Request(
                f"{server.base}/api/activities/{uuid}",
                headers={"X-Read-After": created.headers["X-Read-After"]},
            )
            with urllib.request.urlopen(read) as shown:  # a 400 raises HTTPError
                assert json.loads(shown.read())["activity"]["message"] == f"w{attempt}"
            readers = _reading_pids(server.output)
            if len(readers) == 2:
                break
        assert len(readers) == 2, readers  # both workers read back a write


def _reading_pids(output: str) -> set[int]:
    """The worker pids of the request log's GET /api/activities/<uuid> lines."""
    pids = set()
    for line in output.splitlines():
        if line.startswith("{") and '"route":"/api/activities/<activity_uuid>"' in line:
            record = json.loads(line)
            if record.get("method") == "GET" and record.get("status") == 200:
                pids.add(record["pid"])
    return pids


def _readme_block(marker: str) -> str:
    blocks = re.findall(r"^ *```sh\n(.*?)^ *```", (ROOT / "README.md").read_text(), re.S | re.M)
    return next(block for block in blocks if marker in block)


def test_the_readmes_curl_example_reads_its_own_write(pair: ReplicaPair, tmp_path: Path) -> None:
    # README, "Scaling out": the write's X-Read-After, sent back by curl, against
    # `cruddur serve` reading from a replica that replays nothing for a minute.
    script = _readme_block('-H "X-Read-After: $AFTER"').replace("localhost:4567", "{base}")
    pair.set_apply_delay(60_000)
    env = {
        "READER_CONNECTION_URL": pair.replica_url,
        "CRUDDUR_REPLICA_MAX_LAG": "3600",
        "CRUDDUR_FEED_CACHE": "0",  # every read reaches a database
    }
    try:
        with serve(pair.primary_url, tmp_path, env=env) as server:
            health = f"{server.base}/api/health"
            _wait_until(
                lambda: json.loads(urllib.request.urlopen(health).read())["replica"]["in_use"]
            )
            done = subprocess.run(
                ["bash", "-eu", "-o", "pipefail", "-c",
                 script.replace("{base}", server.base) + '\necho; echo "AFTER=$AFTER"'],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
                env={**os.environ, "CRUDDUR_HOME": str(tmp_path),
                     "CONNECTION_URL": pair.primary_url},
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            feed, after = done.stdout.rsplit("AFTER=", 1)
            without_header = json.loads(
                urllib.request.urlopen(f"{server.base}/api/activities/home").read()
            )
    finally:
        pair.set_apply_delay(0)
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+\.[0-9]+\.[A-Za-z0-9_-]{22}", after.strip()), (
        done.stdout
    )
    assert json.loads(feed)[0]["message"] == "Hello"  # the primary's rows, by the header
    assert without_header[0]["message"] != "Hello"  # the replica's: it has not replayed it


def test_db_status_reports_the_replica_and_its_lag(pair: ReplicaPair) -> None:
    env = {"CONNECTION_URL": pair.primary_url, "READER_CONNECTION_URL": pair.replica_url}
    shown = run(ROOT / ".venv/bin/cruddur", "db", "status", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "behind (limit 5 s): reads use it" in shown.stdout
    assert parse(pair.replica_url)["password"] not in shown.stdout + shown.stderr
    pair.stop_replica("fast")
    try:
        shown = cli(ROOT / ".venv/bin/cruddur", "db", "status", env=env)
        assert "replica   unreachable" in shown.stdout
        assert shown.returncode == 0  # the primary serves: the service works
    finally:
        pair.start_replica()


def test_the_lag_clock_counts_from_the_oldest_wal_not_replayed() -> None:
    clock = LagClock()
    assert clock.lag(0.0, 100) is None  # no sample of the primary yet
    for second in range(31):
        clock.primary_at(float(second), 100)  # an idle primary: nothing new
    assert clock.lag(30.0, 100) == 0.0  # nothing to replay is no lag, however long idle
    clock.primary_at(31.0, 180)
    clock.primary_at(32.0, 250)
    # Behind since the primary was last seen at or below its position: what it has not
    # replayed may have been written just after. (Counted from the first sample past it,
    # 4 s and 3 s here, a replica a look later than that read as within the limit.)
    assert clock.lag(35.0, 100) == 5.0
    assert clock.lag(35.0, 200) == 4.0
    assert clock.lag(35.0, 250) == 0.0


def test_the_lag_clock_starts_over_when_the_primary_goes_back() -> None:
    # A primary restored from a backup writes again from the backup's position. Its new
    # samples were dropped as old, and a replica rebuilt from it, caught up, read as
    # behind (or not known) until the worker restarted.
    clock = LagClock()
    clock.primary_at(0.0, 5000)
    clock.primary_at(1.0, 6000)
    clock.primary_at(10.0, 300)  # restored: back to 300
    assert clock.lag(11.0, 300, estimate=3600.0) == 0.0  # caught up with it: no lag
    clock.primary_at(12.0, 400)
    assert clock.lag(13.0, 400) == 0.0
    assert clock.lag(13.0, 350) > 0.0


def test_a_replica_holding_a_history_the_restored_primary_no_longer_has_is_not_used(
    pair: ReplicaPair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A primary restored from a backup writes again from the backup's WAL position, behind
    # what its replica replayed. The replica, having replayed all it received, said 0 s
    # behind, and the restored primary's X-Read-After positions, lower than its own, were
    # judged replayed: reads came from data the primary no longer has, and a new crud's
    # page was a 404 to its author. Rebuilt from the restored primary, the replica then
    # stayed out of use until the worker restarted.
    primary = pair.from_backup("restored-primary", standby=False)
    backup = replica = app = None
    try:
        # The backup it will be restored from, to start on its port.
        backup = pair.from_backup(
            "earlier-backup", primary.url, standby=False, port=primary.port, start=False
        )
        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE history_marker (at timestamptz)")
            conn.execute("INSERT INTO history_marker VALUES (now())")
            conn.execute("SELECT pg_switch_wal()")  # its WAL far past the backup's
        replica = pair.from_backup("its-replica", primary.url, standby=True)
        pair.wait_caught_up(replica_url=replica.url, primary_url=primary.url)
        env = {"CONNECTION_URL": primary.url, "READER_CONNECTION_URL": replica.url}
        app, api, auth = _app(pair, tmp_path, **env)
        _wait_until(lambda: _in_use(api))
        primary.stop()
        backup.start()  # the primary restored from the backup: its WAL position went back
        with caplog.at_level("INFO", logger="cruddur.api.reads"):
            # (It said "0 s behind: reads use it" for good.)
            _wait_until(lambda: _replica_health(api).get("in_use") is False)
        health = _replica_health(api)
        assert health["following"] is False and health["lag_seconds"] is None, health
        _assert_skipped_saying(caplog, "not following this primary")
        _assert_own_writes_seen(api, auth, "restored", attempts=10)
        shown = cli(ROOT / ".venv/bin/cruddur", "db", "status", env=env)
        assert shown.returncode == 0, shown.stderr
        line = next(x for x in shown.stdout.splitlines() if x.startswith("replica "))
        assert "not following this primary" in line and "reads go to the primary" in line, line
        # Rebuilt from the restored primary: in use again, without a restart.
        replica.restore_from(primary.url, standby=True)
        replica.start()
        pair.wait_caught_up(replica_url=replica.url, primary_url=primary.url)
        _wait_until(lambda: _replica_health(api).get("in_use") is True)
        assert _replica_health(api)["following"] is True
    finally:
        if app is not None:
            _close(app)
        for server in (replica, backup, primary):
            if server is not None:
                server.remove()


def _streams_from(replica_url: str, port: int) -> bool:
    with psycopg.connect(replica_url, autocommit=True) as conn:
        row = conn.execute("SELECT status, sender_port FROM pg_stat_wal_receiver").fetchone()
    return row is not None and row == ("streaming", port)


def test_a_replica_of_a_server_promoted_away_from_the_primary_is_not_used(
    pair: ReplicaPair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A review: a replica of a copy of the primary that was promoted (a failover the
    # primary was not part of: split brain) shares the primary's cluster and database
    # oid. While its WAL position stayed below the primary's it passed for following,
    # and its positions, another history's, were taken for replayed: the crud a writer
    # had just posted was a 404 to them.
    # Its replica is made while it is still a replica (a cascade), so it follows the
    # promotion by streaming: its last restartpoint still says timeline 1 (the check
    # read only that, and missed it for up to checkpoint_timeout).
    # (Made from the primary, then pointed at the other: a base backup of a replica
    # needs full-page writes, which the pair runs without.)
    promoted = pair.from_backup("promoted", standby=True)
    its_replica = app = None
    try:
        its_replica = pair.from_backup("its-replica", standby=True)
        pair.wait_caught_up(replica_url=promoted.url)
        pair.wait_caught_up(replica_url=its_replica.url)
        upstream = conninfo_to_dict(promoted.url)
        upstream.pop("dbname", None)
        with psycopg.connect(its_replica.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(
                    sql.Literal(make_conninfo(**upstream))
                )
            )
            conn.execute("SELECT pg_reload_conf()")
        _wait_until(lambda: _streams_from(its_replica.url, promoted.port))
        with psycopg.connect(promoted.url, autocommit=True) as conn:
            assert conn.execute("SELECT pg_promote()").fetchone() == (True,)
            conn.execute("CREATE TABLE other_history (n int)")
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            for _ in range(2):  # the primary's WAL well past the promoted server's
                conn.execute("CREATE TEMP TABLE filler AS SELECT generate_series(1, 20000) n")
                conn.execute("DROP TABLE filler")
                conn.execute("SELECT pg_switch_wal()")
        app, api, auth = _app(pair, tmp_path, READER_CONNECTION_URL=its_replica.url)
        with caplog.at_level("INFO", logger="cruddur.api.reads"):
            _wait_until(lambda: _replica_health(api).get("following") is False)
        assert _replica_health(api)["in_use"] is False
        _assert_skipped_saying(caplog, "past the primary's")
        _assert_own_writes_seen(api, auth, "split", attempts=5)
        env = {"CONNECTION_URL": pair.primary_url, "READER_CONNECTION_URL": its_replica.url}
        shown = cli(ROOT / ".venv/bin/cruddur", "db", "status", env=env)
        line = next(x for x in shown.stdout.splitlines() if x.startswith("replica "))
        assert "past the primary's" in line, line
    finally:
        if app is not None:
            _close(app)
        for server in (its_replica, promoted):
            if server is not None:
                server.remove()


def test_a_replica_stuck_for_hours_reads_as_hours_behind() -> None:
    clock = LagClock()
    for second in range(7200):  # the primary writes on; the replica replays nothing
        clock.primary_at(float(second), 1000 + second)
    # Its lag grows with it (it stopped at 600 s: a limit of 3600 kept it in use).
    # (Behind even the first sample: the clock's 7200 s, or the replica's own estimate
    # of how old its data is when that says more.)
    assert clock.lag(7200.0, 999, estimate=60.0) == 7200.0
    assert clock.lag(7200.0, 1000 + 7198) <= 2.0  # one nearly caught up: nearly no lag
    assert len(clock._samples) <= clock.max_samples


@pytest.mark.parametrize(
    "where", ["the primary itself", "nothing listening", "a replica of another cluster"]
)
def test_a_misconfigured_replica_is_reported_from_the_first_look(
    api_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    where: str,
) -> None:
    # Reads go to the primary either way; the operator is told why, once, at once. A
    # replica of another cluster was judged by its WAL positions against this primary's:
    # in use, or behind, by chance.
    parts = parse(api_url)
    if where == "a replica of another cluster":
        reader = request.getfixturevalue("pair").replica_url
    else:
        reader = api_url if where == "the primary itself" else api_url.replace(
            f"port={parts['port']}", "port=1"
        )  # fmt: skip
    assert reader != api_url or where == "the primary itself"
    settings = Settings.from_env(
        {"CRUDDUR_HOME": str(tmp_path), "CONNECTION_URL": api_url,
         "READER_CONNECTION_URL": reader, "CRUDDUR_FEED_CACHE": "0"}
    )  # fmt: skip
    app = create_app(settings)
    router = app.extensions["cruddur.reads"]
    try:
        with caplog.at_level("INFO", logger="cruddur.api.reads"):
            assert app.test_client().get("/api/activities/@andrewbrown").status_code == 200
            _wait_until(lambda: "replica skipped" in caplog.text, seconds=10)
            time.sleep(2.5)  # more looks, same reason: no more lines
    finally:
        _close(app)
    assert not router.state.fresh(router.max_lag)
    lines = [r.getMessage() for r in caplog.records if "replica skipped" in r.getMessage()]
    assert len(lines) == 1, lines
    expected = {
        "the primary itself": "not a replica",
        "nothing listening": "unreachable",
        "a replica of another cluster": "not following this primary: a replica of another",
    }[where]
    assert expected in lines[0]
    assert parts["password"] not in caplog.text


def test_a_reader_url_naming_another_database_on_the_replica_is_not_used(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # Only the cluster was compared: READER_CONNECTION_URL naming another database on the
    # replica was used, so writers never read their own writes (or, with no schema there,
    # every feed was a 503), while health said the replica was in use and ok.
    pair.wait_caught_up()
    other = with_database(pair.replica_url, "postgres")
    app, api, auth = _app(pair, tmp_path, READER_CONNECTION_URL=other, CRUDDUR_FEED_CACHE="0")
    try:
        _wait_until(lambda: _replica_health(api).get("following") is False)
        assert _replica_health(api)["in_use"] is False
        problem = app.extensions["cruddur.reads"].state.problem
        assert "names another database on the replica" in problem
        created = api.post(
            "/api/activities", json={"message": "mine", "ttl": "1-day"}, headers=auth
        )
        assert created.status_code == 201
        after = {"X-Read-After": created.headers["X-Read-After"]}
        home = api.get("/api/activities/home", headers=after)
        assert home.status_code == 200 and "mine" in home.get_data(as_text=True)
    finally:
        _close(app)


def test_a_worker_started_while_the_replica_is_far_behind_keeps_its_reads_off_it(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # The lag clock starts at the worker's first sample of the primary: a replica already
    # far behind then read as ~0 s behind, and served reads for the first max_lag seconds
    # of every worker (a restart, a deploy) however stale it was.
    with psycopg.connect(pair.primary_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lag_marker (at timestamptz)")
    pair.wait_caught_up()  # a transaction replayed: its age is known
    pair.pause_replay(True)
    try:
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            conn.execute("INSERT INTO lag_marker VALUES (now())")  # WAL it will not replay
        time.sleep(4)  # the replica is 4 s behind before the worker starts
        app, api, _ = _app(pair, tmp_path, CRUDDUR_REPLICA_MAX_LAG="2")
        router = app.extensions["cruddur.reads"]
        try:
            looks = _looks_while_kept_off(api, router, seconds=1.5)
            assert [s.lag_seconds for s in looks if s.fresh(router.max_lag)] == []
            # Its lag: at least the 4 s, or not known (nothing replayed since it started).
            lags = [s.lag_seconds for s in looks]
            assert all(lag is None or lag >= 4 for lag in lags), lags
        finally:
            _close(app)
    finally:
        pair.pause_replay(False)
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS lag_marker")


def test_the_lag_clock_takes_the_replicas_estimate_while_behind_its_first_sample() -> None:
    clock = LagClock()
    clock.primary_at(100.0, 500)  # the first sample: the replica was already behind it
    assert clock.lag(100.5, 400, estimate=3600.0) == 3600.0  # not 0.5 s
    assert clock.lag(100.5, 400) == math.inf  # no estimate: not known
    assert clock.lag(101.0, 500, estimate=3600.0) == 0.0  # caught up: none
    clock.primary_at(102.0, 600)
    # The clock knows from here: last seen at 500 at 100.0.
    assert clock.lag(103.0, 550, estimate=3600.0) == 3.0


def test_a_watcher_that_stops_hearing_from_the_replica_does_not_keep_it_in_use(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # The watcher's query can wait for ever (a hung server process, or a connection lost
    # without a reset: no answer until TCP gives up, ~15 min). Its last look, fresh at the
    # time, vouched for the replica all that while, however far behind it fell.
    pair.wait_caught_up()
    app, api, auth = _app(pair, tmp_path, CRUDDUR_REPLICA_MAX_LAG="2", CRUDDUR_FEED_CACHE="0")
    try:
        _wait_until(lambda: _in_use(api))
        with psycopg.connect(pair.replica_url, autocommit=True) as conn:
            (pid,) = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                ["cruddur-replica-watch"],
            ).fetchone()
        os.kill(pid, signal.SIGSTOP)  # the watcher's session stops answering
        try:
            pair.pause_replay(True)
            created = api.post(
                "/api/activities", json={"message": "while unwatched", "ttl": "1-hour"},
                headers=auth,
            )  # fmt: skip
            assert created.status_code == 201
            time.sleep(4)  # twice the limit: the replica is 4 s behind
            assert not _in_use(api)
            assert api.get("/api/activities/home").get_json()[0]["message"] == "while unwatched"
            # A review: health showed the last look (0 s behind) for as long as the look
            # hung. Bounded, the look is cut, and the next, on a new session, sees the lag.
            lag = _replica_health(api)["lag_seconds"]
            assert lag is not None and lag >= 2, _replica_health(api)
        finally:
            os.kill(pid, signal.SIGCONT)
            pair.pause_replay(False)
    finally:
        _close(app)


def test_a_worker_started_while_the_replica_is_cut_off_keeps_its_reads_off_it(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # Cut off from its primary, a replica has replayed all it received: its own estimate
    # is 0 s, and the lag clock's first sample was ~0 s old. Reads went to it, however
    # much it missed, for the first max_lag seconds of every worker.
    pair.wait_caught_up()
    with psycopg.connect(pair.replica_url, autocommit=True) as conn:
        (conninfo,) = conn.execute("SHOW primary_conninfo").fetchone()
        conn.execute("ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS lag_marker (at timestamptz)")
            conn.execute("INSERT INTO lag_marker VALUES (now())")  # WAL it will not receive
        time.sleep(4)  # the replica is 4 s behind before the worker starts
        app, api, _ = _app(pair, tmp_path, CRUDDUR_REPLICA_MAX_LAG="2")
        router = app.extensions["cruddur.reads"]
        try:
            looks = _looks_while_kept_off(api, router, seconds=1.5)
            # Its lag: at least the 4 s, or not known (nothing replayed since it started).
            lags = [s.lag_seconds for s in looks]
            assert all(lag is None or lag >= 4 for lag in lags), lags
        finally:
            _close(app)
    finally:
        with psycopg.connect(pair.replica_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo))
            )
            conn.execute("SELECT pg_reload_conf()")
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS lag_marker")
        pair.wait_caught_up()


def test_read_your_writes_holds_behind_a_reader_endpoint_of_two_replicas(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # A reader endpoint (Aurora's, a load balancer's: README, "Scaling out") hands each
    # connection to any replica. The replayed position was checked on one connection
    # (or taken from the watcher's look, on yet another) and the read ran on another:
    # a replica past the write vouched for one that was not.
    pair.wait_caught_up()
    lagging = pair.another_replica()
    try:
        params = parse(pair.replica_url)
        reader = make_conninfo(
            pair.replica_url,
            host="127.0.0.1,127.0.0.1",
            port=f"{params['port']},{lagging.port}",
            load_balance_hosts="random",
        )
        # A limit both are within: the check under test is the position, not the lag.
        app, api, auth = _app(
            pair, tmp_path, READER_CONNECTION_URL=reader, CRUDDUR_REPLICA_MAX_LAG="3600",
            CRUDDUR_FEED_CACHE="0", CRUDDUR_POOL_MIN_SIZE="4",  # connections to both
        )  # fmt: skip
        unseen = []
        try:
            _wait_until(lambda: _in_use(api))
            created = api.post(
                "/api/activities", json={"message": "parent", "ttl": "1-day"}, headers=auth
            )
            parent = created.get_json()["uuid"]
            # The parent on both replicas; then the second one replays 10 s late, so every
            # reply below is on one replica and not yet on the other.
            pair.wait_caught_up()
            pair.wait_caught_up(replica_url=lagging.url)
            lagging.set_apply_delay(10_000)
            for attempt in range(60):
                reply = api.post(
                    f"/api/activities/{parent}/reply", json={"message": f"r{attempt}"},
                    headers=auth,
                )  # fmt: skip
                assert reply.status_code == 201
                position = reply.headers["X-Read-After"]
                for _ in range(3):
                    shown = api.get(f"/api/activities/{parent}", headers={"X-Read-After": position})
                    uuids = [r["uuid"] for r in shown.get_json()["replies"]]
                    if reply.get_json()["uuid"] not in uuids:
                        unseen.append(attempt)
        finally:
            _close(app)
        assert unseen == []
    finally:
        lagging.remove()


def test_db_status_gives_a_lag_one_look_cannot_measure_as_a_bound(pair: ReplicaPair) -> None:
    # A review: a replica 8 s behind after a quiet minute was "78.1 s behind … too far
    # behind", the age of its last replayed transaction, where /api/health said 8.0.
    with psycopg.connect(pair.primary_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lag_marker (at timestamptz)")
    pair.wait_caught_up()  # a transaction replayed: its age is known
    pair.pause_replay(True)
    try:
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            conn.execute("INSERT INTO lag_marker VALUES (now())")  # WAL it will not replay
        env = {"CONNECTION_URL": pair.primary_url, "READER_CONNECTION_URL": pair.replica_url}
        shown = cli(ROOT / ".venv/bin/cruddur", "db", "status", env=env)
        assert shown.returncode == 0, shown.stderr
        line = next(x for x in shown.stdout.splitlines() if x.startswith("replica "))
        assert line.startswith("replica   at most "), line
    finally:
        pair.pause_replay(False)
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS lag_marker")
        pair.wait_caught_up()


def test_a_pooler_nobody_named_is_said_by_db_status_and_the_replica_watcher(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # A review: behind a PgBouncer, CRUDDUR_POOLER unset, the API could not reach the
    # replica ("unsupported startup parameter: options", no hint in the watcher's line)
    # while `db status`, which sent no session settings, said "reads use it".
    from pgbouncer_support import PgBouncer

    bouncer = PgBouncer(pair.replica_url)
    try:
        reader = bouncer.url_for(pair.replica_url)
        env = {"CONNECTION_URL": pair.primary_url, "READER_CONNECTION_URL": reader}
        shown = cli(ROOT / ".venv/bin/cruddur", "db", "status", env=env)
        assert shown.returncode == 0, shown.stderr
        line = next(x for x in shown.stdout.splitlines() if x.startswith("replica "))
        assert "unreachable" in line and "CRUDDUR_POOLER=transaction" in line, line
        app, _, _ = _app(pair, tmp_path, READER_CONNECTION_URL=reader)
        try:
            router = app.extensions["cruddur.reads"]
            _wait_until(lambda: router.state is not NOT_LOOKED_AT and not router.state.reachable)
            assert "CRUDDUR_POOLER=transaction" in router.state.problem
        finally:
            _close(app)
    finally:
        bouncer.stop()


def test_db_status_does_not_call_a_cut_off_replica_caught_up(pair: ReplicaPair) -> None:
    # Cut off from its primary, a replica has replayed all it received: its own estimate
    # is 0 s. `db status` said "0.0 s behind: reads use it" where the API (above) keeps
    # its reads off it.
    pair.wait_caught_up()
    with psycopg.connect(pair.replica_url, autocommit=True) as conn:
        (conninfo,) = conn.execute("SHOW primary_conninfo").fetchone()
        conn.execute("ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1'")
        conn.execute("SELECT pg_reload_conf()")
    env = {
        "CONNECTION_URL": pair.primary_url,
        "READER_CONNECTION_URL": pair.replica_url,
        "CRUDDUR_REPLICA_MAX_LAG": "2",
    }
    try:
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS lag_marker (at timestamptz)")
            conn.execute("INSERT INTO lag_marker VALUES (now())")  # WAL it will not receive
        time.sleep(3)
        shown = cli(ROOT / ".venv/bin/cruddur", "db", "status", env=env)
        assert shown.returncode == 0, shown.stderr
        line = next(x for x in shown.stdout.splitlines() if x.startswith("replica "))
        assert "reads use it" not in line, line
        behind = re.search(r"([\d.]+) s behind", line)
        assert behind is None or float(behind[1]) >= 3, line
        assert behind is not None or "not known" in line, line
    finally:
        with psycopg.connect(pair.replica_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo))
            )
            conn.execute("SELECT pg_reload_conf()")
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS lag_marker")
        pair.wait_caught_up()


def test_read_your_writes_holds_behind_a_transaction_pooler_over_two_replicas(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # PgBouncer (pool_mode=transaction, host=a,b) or RDS Proxy's read-only endpoint hands
    # each transaction to any replica: on an autocommit connection the replayed-position
    # check and the read were two transactions, and a replica past the write vouched for
    # a read another one served (24 of 160 such reads were 404s).
    from helpers import free_port
    from pgbouncer_support import PgBouncer

    pair.wait_caught_up()
    port = free_port()
    fast = pair.another_replica("replica-a", host="127.0.0.2", port=port)
    slow = pair.another_replica("replica-b", host="127.0.0.3", port=port)
    bouncer = None
    try:
        slow.set_apply_delay(3_000)
        both = make_conninfo(pair.replica_url, host="127.0.0.2,127.0.0.3", port=str(port))
        bouncer = PgBouncer(both, pool_size=4)
        app, api, auth = _app(
            pair, tmp_path, READER_CONNECTION_URL=bouncer.url_for(pair.replica_url),
            CRUDDUR_POOLER="transaction", CRUDDUR_REPLICA_MAX_LAG="3600",
            CRUDDUR_FEED_CACHE="0", CRUDDUR_POOL_MAX_SIZE="16",
        )  # fmt: skip
        statuses: list[int] = []
        try:
            # A transaction for both new replicas to replay: until one has, a replica
            # that WAL is still reaching (a busy machine's autovacuum) is behind by an
            # unknown time, never in use, and this wait timed out in 2 full runs of 4.
            with psycopg.connect(pair.primary_url, autocommit=True) as primary:
                primary.execute("SELECT txid_current()")
            _wait_until(lambda: _in_use(api), 30)
            clients = [CheckedClient(app) for _ in range(16)]
            with ThreadPoolExecutor(16) as readers:
                for attempt in range(10):
                    created = api.post(
                        "/api/activities", json={"message": f"m{attempt}", "ttl": "1-day"},
                        headers=auth,
                    )  # fmt: skip
                    path = f"/api/activities/{created.get_json()['uuid']}"
                    after = {"X-Read-After": created.headers["X-Read-After"]}
                    statuses += readers.map(
                        lambda c, p=path, h=after: c.get(p, headers=h).status_code, clients
                    )
        finally:
            _close(app)
        assert statuses.count(200) == len(statuses), statuses
    finally:
        if bouncer is not None:
            bouncer.stop()
        fast.remove()
        slow.remove()


def test_a_primary_that_stops_answering_between_two_samples_leaves_the_replica_in_use(
    pair: ReplicaPair, tmp_path: Path
) -> None:
    # A replica replaying ahead of the sample taken before the look is asked about again
    # with a sample taken after it; when that one failed (the primary not answering), the
    # sample from before decided: a healthy replica was called "not following this
    # primary", and reads left it for the primary that was not answering.
    app, _, _ = _app(pair, tmp_path)
    router = app.extensions["cruddur.reads"]
    try:
        with psycopg.connect(pair.primary_url, autocommit=True) as primary:
            (cluster,) = primary.execute(
                "SELECT system_identifier::text FROM pg_control_system()"
            ).fetchone()
        samples = iter([PrimarySample(written=0, cluster=cluster), None])
        router._sample_primary = lambda: next(samples)
        with psycopg.connect(pair.replica_url, autocommit=True) as replica:
            state = router._look(replica)
        assert next(samples, "both taken") == "both taken"
        assert state.following is not False, state
        assert "not following" not in (state.problem or ""), state
    finally:
        _close(app)


@pytest.mark.parametrize(
    ("lag", "said"),
    [
        (5.04, "5.04 s behind (limit 5 s)"),  # read "5.0 s behind (limit 5 s)"
        (5.0004, "5.000 s behind, just past the 5 s limit"),
        (5.0, "5.0 s behind (limit 5 s)"),
        (4.96, "5.0 s behind (limit 5 s)"),  # within: the limit itself is within
        (12.34, "12.3 s behind (limit 5 s)"),
    ],
)
def test_a_lag_near_the_limit_is_said_with_the_digits_that_tell_them_apart(
    lag: float, said: str
) -> None:
    assert said in lag_words(lag, 5.0)
