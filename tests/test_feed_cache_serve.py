"""The feed cache under `cruddur serve` (granian, 2 workers), over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers import ROOT, free_port, run

from cruddur.db import Db
from cruddur.embedded import EmbeddedPostgres
from cruddur.ops import databases, loading
from cruddur.urls import database_name, server_conninfo

CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"
ROUNDS = 1000
WITHIN = 0.1  # seconds: the promise
BOUND = 1.0  # seconds: no copy lives longer


class Http:
    """A kept-alive connection to one `cruddur serve` (a new one after any failure)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            self._conn.request(method, path, body=body, headers=headers or {})
            response = self._conn.getresponse()
            return response.status, response.read()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    def first_uuid(self) -> str | None:
        status, body = self.request("GET", "/api/activities/home")
        if status != 200:
            return None
        page = json.loads(body)
        return page[0]["uuid"] if page else None


@pytest.fixture
def serve_on(tmp_path: Path):
    started: list[subprocess.Popen] = []

    def start(url: str, workers: int = 2, **settings: str) -> Http:
        port = free_port()
        env = {
            **os.environ,
            **settings,
            "CONNECTION_URL": url,
            "CRUDDUR_HOME": str(tmp_path),
            "PORT": str(port),
            "NO_COLOR": "1",
        }
        env.pop("PROD_CONNECTION_URL", None)
        process = subprocess.Popen(
            [str(CRUDDUR), "serve", "--workers", str(workers), "--threads", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        client = Http(port)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.request("GET", "/api/health")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        return client

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _listeners(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
            " 'cruddur-feed-listener' AND datname = current_database()"
        ).fetchone()[0]


def _warm_both_workers(client: Http, url: str, also: Http | None = None) -> None:
    deadline = time.monotonic() + 20
    while _listeners(url) < 2:
        client.first_uuid()
        if also is not None:
            also.first_uuid()
        assert time.monotonic() < deadline, "both workers should be listening"


def test_a_write_is_in_the_next_pages_of_every_worker_within_100_ms(
    serve_on, seeded_db: str, tmp_path: Path
) -> None:
    # Two workers, each its own `cruddur serve` process, so that every round is known to
    # cross from one to the other (in one server's workers, which one answers is
    # up to the kernel: often the same one).
    workers = [serve_on(seeded_db, workers=1), serve_on(seeded_db, workers=1)]
    _warm_both_workers(workers[0], seeded_db, also=workers[1])
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path)}
    token = run(CRUDDUR, "dev", "token", "--handle", "bayko", env=env).stdout.strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    slowest, retried, started = 0.0, 0, time.monotonic()
    for n in range(ROUNDS):
        assert time.monotonic() - started < 300, "1,000 rounds should take a minute or so"
        writer, reader = workers[n % 2], workers[1 - n % 2]
        reader.first_uuid()  # the reader holds a copy from before the write
        body = json.dumps({"message": f"round {n}", "ttl": "1-hour"})
        status, created = writer.request("POST", "/api/activities", body, headers)
        assert status == 201
        uuid = json.loads(created)["uuid"]
        written = time.monotonic()
        tries = 0
        while True:
            # Judged by when the request was sent: a request sent 100 ms after the
            # write must see it, however long the answer then takes to come back.
            sent = time.monotonic()
            if reader.first_uuid() == uuid:
                break
            tries += 1
            late = sent - written
            assert late < WITHIN, f"round {n}: stale {late * 1000:.0f} ms after the write"
            time.sleep(0.002)  # a user's pace, not a busy loop competing for the cores
        retried += tries > 0
        slowest = max(slowest, sent - written)
    print(
        f"{ROUNDS} rounds: latest fresh request sent {slowest * 1000:.1f} ms after its write; "
        f"{retried} rounds needed more than one request"
    )


@pytest.fixture
def own_server(tmp_path_factory) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, so restarting it disturbs no other test."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("restart-home"))
    server.start()
    yield server
    server.stop()


def test_a_database_restart_leaves_no_page_stale_past_the_bound(serve_on, own_server) -> None:
    url = own_server.url()
    with Db(server_conninfo(url), autocommit=True) as server:
        databases.create(server, database_name(url))
    with Db(url) as db:
        loading.load(db, loading.SCHEMA)
        loading.load(db, loading.SEED)
    workers = [serve_on(url, workers=1, CRUDDUR_POOL_TIMEOUT="1") for _ in range(2)]
    _warm_both_workers(workers[0], url, also=workers[1])
    before = workers[0].first_uuid()
    own_server.stop()
    down = time.monotonic()
    # While it is down, no worker answers from its copy past the bound: a 200 now could
    # only come from a copy.
    answers = []
    while time.monotonic() - down < BOUND + 1.0:
        for client in workers:
            sent = time.monotonic()
            try:
                status, _ = client.request("GET", "/api/activities/home")
            except OSError:
                status = None
            answers.append(status)
            if sent - down > BOUND:
                assert status != 200, "a kept page served while the database was down"
        time.sleep(0.05)
    assert 503 in answers
    own_server.start()
    with psycopg.connect(url, autocommit=True) as conn:  # written before anyone listens again
        uuid = str(
            conn.execute(
                "INSERT INTO activities (user_uuid, message) SELECT uuid, 'after the restart'"
                " FROM users WHERE handle = 'londo' RETURNING uuid"
            ).fetchone()[0]
        )
    assert uuid != before
    back = time.monotonic()
    seen = 0
    while seen < 20:  # twenty pages in a row, from both workers
        found = workers[seen % 2].first_uuid()
        if found == uuid:
            seen += 1
        else:
            assert found is None or time.monotonic() - back < BOUND, "a stale page after restart"
            seen = 0
        assert time.monotonic() - back < 30
