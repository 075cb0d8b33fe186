"""Database outages under load, for the tests and bench/outage.py.

A PostgreSQL cluster of the caller's own (the project's embedded-server code in a scratch
folder, on a free port), `cruddur serve` on it, clients posting and reading in threads,
and the outage itself: `pg_ctl stop` (fast or immediate), a wait, `pg_ctl start`. Then
what the clients saw, against what users are promised (README, "Outages"):
- while the database is down, every request gets a 503 with Retry-After within 1 s;
- no request waits longer than 5 s;
- serving again within 1 s of the database accepting connections;
- every acknowledged write is there once; a write that failed is there once or not at all.
"""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from cruddur.config import Settings
from cruddur.db import Db
from cruddur.dev_keys import DevKeys
from cruddur.embedded import APP_DATABASE, SHARED_ROOT, EmbeddedPostgres
from cruddur.ops import loading

ANSWER_WHILE_DOWN = 1.0  # seconds: a 503 within this, while the database is down
LONGEST_WAIT = 5.0  # seconds: no request waits longer, at any point
BACK_WITHIN = 1.0  # seconds after the database accepts connections, all is served again


class Cluster:
    """A throwaway PostgreSQL cluster with the schema and seed, under `home`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.server = EmbeddedPostgres(home)

    def create(self) -> str:
        """Set up, start, load; return the app database's URL."""
        self.server.start()
        with psycopg.connect(self.server.url("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(APP_DATABASE)))
        url = self.server.url()
        with Db(url) as db:
            loading.load(db, loading.SCHEMA)
            loading.load(db, loading.SEED)
        return url

    def stop(self, mode: str) -> None:
        assert self.server.stop(mode), "the cluster was not running"

    def start(self) -> None:
        self.server.start()

    def remove(self) -> None:
        cluster_dir = self.server.cluster_dir
        self.server.stop("immediate")
        shutil.rmtree(cluster_dir, ignore_errors=True)
        if cluster_dir.parent.parent == SHARED_ROOT:  # as root it may live outside home
            cluster_dir.parent.rmdir()


def dev_token(home: Path, handle: str = "andrewbrown") -> str:
    """An access token for a seed user, signed by the dev key pair a server with this
    CRUDDUR_HOME trusts."""
    settings = Settings.from_env({"CRUDDUR_HOME": str(home)})
    return DevKeys(home).mint(settings.auth, f"MOCK-{handle}", expires_in=3 * 3600)


@dataclass(frozen=True)
class Call:
    client: int
    kind: str  # "write" or "read"
    started: float  # time.monotonic()
    ended: float
    status: int  # 0: no answer (refused, reset, timed out)
    retry_after: str | None
    message: str | None  # a write's crud message, unique to the call

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Load:
    """Clients in threads, each in a loop of a request and a short pause, each request
    on a new connection; writers post cruds with unique messages, readers alternate the
    health check and the home feed."""

    def __init__(
        self,
        port: int,
        token: str,
        *,
        writers: int = 4,
        readers: int = 1,
        pause: float = 0.05,
        timeout: float = 10.0,
    ) -> None:
        self.port, self.token, self.pause, self.timeout = port, token, pause, timeout
        self.tag = f"outage-{uuid.uuid4().hex[:8]}"
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(n, "write"), daemon=True)
            for n in range(writers)
        ] + [
            threading.Thread(target=self._run, args=(writers + n, "read"), daemon=True)
            for n in range(readers)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _run(self, client: int, kind: str) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            if kind == "write":
                message = f"{self.tag} c{client} n{n}"
                body = json.dumps({"message": message, "ttl": "1-hour"})
                headers = {
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                }
                call = self._call(client, kind, "POST", "/api/activities", body, headers, message)
            else:
                path = "/api/health" if n % 2 else "/api/activities/home"
                call = self._call(client, kind, "GET", path, None, {}, None)
            with self._lock:
                self.calls.append(call)
            self._stop.wait(self.pause)

    def _call(self, client, kind, method, path, body, headers, message) -> Call:
        started = time.monotonic()
        status, retry_after = 0, None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status, retry_after = response.status, response.getheader("Retry-After")
        except OSError:
            pass  # no answer: status 0
        finally:
            conn.close()
        return Call(client, kind, started, time.monotonic(), status, retry_after, message)


def wait_accepting(url: str, timeout: float = 120) -> float:
    """Poll with direct connections until one succeeds; the moment that attempt began
    (the server accepted at some point during it: counting from its start is the
    stricter reading of "within 1 s of the database accepting connections")."""
    deadline = time.monotonic() + timeout
    while True:
        attempt = time.monotonic()
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return attempt
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@dataclass
class Outage:
    """One outage's moments (time.monotonic()) and what the clients saw around it."""

    mode: str
    seconds: float
    down: float = 0.0  # pg_ctl stop returned: no connection is possible from here
    back: float = 0.0  # the first direct connection that succeeded after the start
    calls: list[Call] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # crud message → rows

    @property
    def during(self) -> list[Call]:
        return [c for c in self.calls if self.down <= c.started < self.back]

    @property
    def slowest(self) -> float:
        return max(c.seconds for c in self.calls)

    @property
    def slowest_while_down(self) -> float:
        return max((c.seconds for c in self.during), default=0.0)

    @property
    def first_ok_after_back(self) -> float | None:
        ends = [c.ended for c in self.calls if c.ok and c.ended >= self.back]
        return min(ends) - self.back if ends else None

    @property
    def wrong_while_down(self) -> list[Call]:
        """Calls during the outage not answered in time, or answered with anything but a
        503 with Retry-After or a success (a success means the database answered it: the
        server may accept connections a moment before this side's poll sees it)."""
        return [
            c
            for c in self.during
            if c.seconds > ANSWER_WHILE_DOWN or not ((c.status == 503 and c.retry_after) or c.ok)
        ]

    @property
    def failed_after_recovery(self) -> list[Call]:
        return [c for c in self.calls if c.started >= self.back + BACK_WITHIN and not c.ok]

    @property
    def too_slow(self) -> list[Call]:
        return [c for c in self.calls if c.seconds > LONGEST_WAIT or c.status == 0]

    @property
    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.kind == "write"]

    @property
    def lost(self) -> list[str]:
        return [
            c.message for c in self.writes if c.status == 201 and self.counts.get(c.message) != 1
        ]

    @property
    def doubled(self) -> list[str]:
        return [m for m, n in self.counts.items() if n > 1]

    @property
    def failed_writes(self) -> list[Call]:
        return [c for c in self.writes if c.status != 201]

    def summary(self) -> str:
        first = self.first_ok_after_back
        return (
            f"{self.mode} {self.seconds:g} s: {len(self.calls)} requests "
            f"({len(self.during)} while down), slowest {self.slowest:.2f} s "
            f"(while down {self.slowest_while_down:.2f} s), first success "
            f"{'never' if first is None else f'+{first:.2f} s'} after the database was back; "
            f"writes acknowledged {sum(c.status == 201 for c in self.writes)}, lost "
            f"{len(self.lost)}, doubled {len(self.doubled)}, failed {len(self.failed_writes)} "
            f"(of which stored {sum(self.counts.get(c.message, 0) for c in self.failed_writes)})"
        )


def stored_counts(url: str, tag: str) -> dict[str, int]:
    """How many times each of a load's messages (tagged `tag`) is stored."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT message, count(*) FROM activities WHERE message LIKE %s GROUP BY message",
            [f"{tag} %"],
        ).fetchall()
    return dict(rows)


def run_outage(
    cluster: Cluster,
    url: str,
    load: Load,
    mode: str,
    seconds: float,
    *,
    before: float = 2.0,
    after: float = 3.0,
) -> Outage:
    """Stop the cluster for `seconds` (from the stop command to the start command) under
    `load`, which must be running; then count the load's writes in the database."""
    outage = Outage(mode, seconds)
    first_call = len(load.calls)
    time.sleep(before)
    stop_issued = time.monotonic()
    cluster.stop(mode)
    outage.down = time.monotonic()
    time.sleep(max(0.0, stop_issued + seconds - time.monotonic()))
    starting = threading.Thread(target=cluster.start)
    starting.start()
    outage.back = wait_accepting(url)
    starting.join()
    time.sleep(after)
    outage.calls = [c for c in list(load.calls)[first_call:] if c.started >= stop_issued - before]
    outage.counts = stored_counts(url, load.tag)
    return outage
