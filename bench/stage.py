"""What a benchmark runs on: the PostgreSQL server (CRUDDUR_BENCH_URL's, else the embedded
one), a database of its own rebuilt for each run, and the API (or another server)
started on a free port and stopped with whatever it forked.

Imported by the scripts beside it (bench/ is on sys.path when one of them runs).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from cruddur.config import Settings
from cruddur.db import Db
from cruddur.ops import databases, loading
from cruddur.ports import unused_port
from cruddur.targets import embedded_server
from cruddur.urls import parse, server_conninfo, with_database

VENV_BIN = Path(sys.executable).parent
CRUDDUR = VENV_BIN / "cruddur"
BENCH_DIR = Path(__file__).resolve().parent


def server_url() -> str:
    given = os.environ.get("CRUDDUR_BENCH_URL")
    return given or embedded_server(Settings.from_env()).start()


def bench_database(name: str) -> str:
    """The URL of the benchmark's own database `name` on the server."""
    return with_database(server_url(), name)


def fresh_database(url: str, *files: Path) -> None:
    """Drop url's database and create it again, then load each SQL file into it
    (loading.SCHEMA, loading.SEED)."""
    dbname = parse(url)["dbname"]
    with Db(server_conninfo(url), autocommit=True) as admin:
        databases.drop(admin, dbname, force=True)
        databases.create(admin, dbname)
    if files:
        with Db(url) as db:
            for file in files:
                loading.load(db, file)


def drop_database(url: str) -> None:
    with Db(server_conninfo(url), autocommit=True) as admin:
        databases.drop(admin, parse(url)["dbname"], force=True)


def seed_fake(url: str, activities: int, users: int, **run: object) -> None:
    """`cruddur db seed --fake` on url's database, as a user runs it."""
    subprocess.run(
        [CRUDDUR, "db", "seed", "--fake", "--users", str(users),
         "--activities", str(activities), "--seed", "4"],
        env={**os.environ, "CONNECTION_URL": url}, check=True, **run,
    )  # fmt: skip


def vacuum_analyze(url: str) -> None:
    with Db(url, autocommit=True) as db:
        db.query_commit("VACUUM ANALYZE")


def build(url: str, activities: int, users: int) -> None:
    """The feed benchmarks' database: the schema, the seed and `activities` fake cruds."""
    fresh_database(url, loading.SCHEMA, loading.SEED)
    started = time.perf_counter()
    seed_fake(url, activities, users)
    print(f"  {activities:,} activities loaded in {time.perf_counter() - started:.1f} s")
    vacuum_analyze(url)


# -- servers ------------------------------------------------------------------------


def free_port() -> int:
    return unused_port()  # one no client socket takes while its server is down


def launch(
    argv: list, env: dict[str, str], base: str, ready: str = "/api/health", tries: int = 150
) -> subprocess.Popen:
    """Start a server in its own process group (so `stop` finds what it forks) and wait
    until GET base+ready answers 200."""
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    for _ in range(tries):
        try:
            with urllib.request.urlopen(f"{base}{ready}", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    stop(process, timeout=5)
    raise SystemExit(f"{argv[0]} {' '.join(map(str, argv[1:3]))} did not answer on {base}")


def stop(*processes: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL to the whole group of one that does not end in time."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# Servers measured with the feed cache off (every request reads the database); "quiet":
# also without the request log line (CRUDDUR_LOG_LEVEL=warning).
UNCACHED = {
    "granian-uncached": "granian",
    "gunicorn-uncached": "gunicorn",
    "granian-uncached-quiet": "granian",
}


def service_command(server: str, port: int, workers: int, threads: int) -> list:
    server = UNCACHED.get(server, server)
    if server == "bare":  # the floor: bench/bare_feed.py under granian, as serve runs it
        return [
            sys.executable, "-m", "granian", "--interface", "wsgi", "--no-ws",
            "--port", str(port), "--workers", str(workers), "--blocking-threads", str(threads),
            "--working-dir", str(BENCH_DIR), "bare_feed:app",
        ]  # fmt: skip
    return [
        CRUDDUR, "serve", "--server", server, "--port", str(port),
        "--workers", str(workers), "--threads", str(threads),
    ]  # fmt: skip


def start_service(
    url: str,
    server: str,
    workers: int,
    threads: int,
    *,
    env: dict[str, str] | None = None,
    command: list | None = None,
) -> tuple[subprocess.Popen, str]:
    """`cruddur serve --server <server>` (or bench/bare_feed.py: "bare") on url's
    database; the process and its base URL."""
    port = free_port()
    argv = service_command(server, port, workers, threads)
    if command is not None:  # another way to run `cruddur`, with the same arguments
        argv = [*command, *argv[1:]]
    # Telemetry only where a load asks for it.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CRUDDUR_METR"))}
    clean.update({"CONNECTION_URL": url, "CRUDDUR_POOL_MAX_SIZE": str(threads)}, **(env or {}))
    if server in UNCACHED:
        clean["CRUDDUR_FEED_CACHE"] = "0"
    if server.endswith("-quiet"):
        clean["CRUDDUR_LOG_LEVEL"] = "warning"
    base = f"http://127.0.0.1:{port}"
    ready = "/api/activities/home" if server == "bare" else "/api/health"
    return launch(argv, clean, base, ready), base


@contextlib.contextmanager
def services(
    url: str, servers: dict[str, str], workers: int, threads: int
) -> Iterator[dict[str, str]]:
    """Each named server (name: server, as start_service takes it) on url's database,
    side by side; their base URLs; all stopped when the block ends."""
    started: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for name, server in servers.items():
            started[name] = start_service(url, server, workers, threads)
        yield {name: base for name, (_, base) in started.items()}
    finally:
        stop(*(process for process, _ in started.values()))


def callgrind_instructions(
    arguments: list[str], env: dict[str, str], folder_setting: str | None = None
) -> int:
    """The instructions `python arguments…` runs, every thread included, under valgrind's
    callgrind (niced: the count does not depend on the machine's load). folder_setting:
    an environment variable given a scratch folder of the run's own."""
    with tempfile.TemporaryDirectory() as folder:
        if folder_setting:
            env = {**env, folder_setting: folder}
        out = subprocess.run(
            ["nice", "-n", "10", "valgrind", "--tool=callgrind",
             f"--callgrind-out-file={folder}/out", sys.executable, *arguments],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode or not found:
        raise SystemExit(f"callgrind failed:\n{out.stderr[-3000:]}")
    return int(found.group(1))


def per_call(
    count: Callable[[str, int], int], names: Iterable[str], calls: int
) -> dict[str, float]:
    """For each name, (count(name, calls) - count(name, 0)) / calls: one call's
    instructions, start-up and warm-up cancelled out; two runs at a time (two cores)."""
    with ThreadPoolExecutor(2) as pool:
        runs = {
            name: (pool.submit(count, name, 0), pool.submit(count, name, calls)) for name in names
        }
        return {name: (many.result() - few.result()) / calls for name, (few, many) in runs.items()}


def traced_feed_environment(size: int, endpoint: str, **settings: str) -> None:
    """This process's environment for an in-process traced home feed: no OTEL_* setting of
    the caller's, the feed database of `size` (bench/feed.py builds it), the feed cache
    off, one connection, spans to `endpoint` in one batch when flushed (never on the
    SDK's timer); `settings` add to it."""
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[name]
    url = bench_database(f"cruddur_bench_feed_{size}")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError:
        # Without it every request was a 503, and the counts those of the error path.
        print(f"  no feed database of {size:,} yet: building it as bench/feed.py does")
        build(url, size, 1000)  # bench/feed.py's default --users
    os.environ.update(
        CONNECTION_URL=url,
        CRUDDUR_FEED_CACHE="0", CRUDDUR_POOL_MAX_SIZE="1", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_BSP_SCHEDULE_DELAY="3600000", OTEL_BSP_MAX_QUEUE_SIZE="100000",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="100000", **settings,
    )  # fmt: skip
