"""The home feed under load: over HTTP (wrk → cruddur serve) and as bare SQL (pgbench).

For each table size, in one run on one machine:
  1. a database cruddur_bench_feed_<size> with the schema, the seed and
     `cruddur db seed --fake` activities (dropped and rebuilt each run);
  2. `cruddur serve` on it under each WSGI server, and bench/bare_feed.py (Flask and
     psycopg serving the same page with nothing else: the floor for this stack), each
     loaded with wrk: GET /api/activities/home (20 cruds a page);
  3. pgbench running the same SQL file (db/sql/activities/home.sql, first page) on
     the same number of connections, prepared and in its default simple protocol;
round after round, interleaved. Then one table: requests/s, p50 and p99, the whole
machine's busy CPU time per request during the load (server, database and load tool
together, from /proc/stat; all medians over the rounds), the share of prepared
pgbench's requests/s (the median of each round's ratio: both sides of a ratio ran
seconds apart), and each size's p50 against the smallest's. Everything shares the
machine's cores (server, database, load tool), as a single small host would; compare
ratios, not absolute figures.

With --observability it measures instead what telemetry costs on the home feed, for one
size, under granian: the code before telemetry existed ("today", from git), and the
current code with observability off (defaults: the JSON request log on stdout), traces
at 100% and at 10% sampling to a local OTLP/HTTP receiver (this process, which reads and
discards them), and metrics on; each round's share of today's requests/s, median kept.

Usage: .venv/bin/python bench/feed.py [--sizes 1000,1000000] [--duration 4] [--rounds 5]
       [--servers gunicorn,granian,bare] [--workers 2] [--threads 1]
       .venv/bin/python bench/feed.py --observability [--sizes 1000] [--baseline REV]
Needs wrk (Debian: apt-get install wrk) and pgbench (PostgreSQL's, found with the server
binaries). The server is CRUDDUR_BENCH_URL's when set, else the embedded one.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cruddur.config import Settings
from cruddur.db import Db, template
from cruddur.ops import databases, loading
from cruddur.targets import embedded_server
from cruddur.urls import parse, server_conninfo, with_database, without_password

VENV_BIN = Path(sys.executable).parent
BENCH_DIR = Path(__file__).resolve().parent
FIRST_PAGE = {
    "%(limit)s": "20",
    "%(before_created_at)s": "'infinity'",
    "%(before_uuid)s": "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
}


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # the whole machine's busy CPU time per request, from /proc/stat
    share: float = 1.0  # of prepared pgbench's rps: the median of the rounds' ratios
    own_cpu_us: float = 0.0  # --observability: the load's own processes' CPU per request
    requests: int = 0  # answered in the measured run (wrk)


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def timed(command: list, **kwargs) -> tuple[str, float]:
    """The command's output, and the machine's busy CPU seconds while it ran."""
    before = busy_seconds()
    out = subprocess.run(command, capture_output=True, text=True, check=True, **kwargs).stdout
    return out, busy_seconds() - before


def server_url() -> str:
    given = os.environ.get("CRUDDUR_BENCH_URL")
    return given or embedded_server(Settings.from_env()).start()


def build(url: str, activities: int, users: int) -> None:
    dbname = parse(url)["dbname"]
    with Db(server_conninfo(url), autocommit=True) as admin:
        databases.drop(admin, dbname, force=True)
        databases.create(admin, dbname)
    with Db(url) as db:
        loading.load(db, loading.SCHEMA)
        loading.load(db, loading.SEED)
    started = time.perf_counter()
    subprocess.run(
        [VENV_BIN / "cruddur", "db", "seed", "--fake", "--users", str(users),
         "--activities", str(activities), "--seed", "4"],
        env={**os.environ, "CONNECTION_URL": url}, check=True,
    )  # fmt: skip
    print(f"  {activities:,} activities loaded in {time.perf_counter() - started:.1f} s")
    with Db(url, autocommit=True) as db:
        db.query_commit("VACUUM ANALYZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the cost of observability ------------------------------------------------------

TELEMETRY_PACKAGE = "src/cruddur/telemetry/__init__.py"
TARGETS = {"off": 0.98, "traces 10%": 0.90, "metrics": 0.95}  # of today's req/s (issue 14)


class OtlpSink:
    """A local OTLP/HTTP receiver: takes POST /v1/traces, counts, answers 200, discards."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        sink = self
        self.exports = 0
        self.bytes = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.exports += 1
                sink.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) of a process and its descendants, from /proc."""
    total, pending = 0.0, [root]
    while pending:
        pid = pending.pop()
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                pending += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def backend_pids(url: str) -> list[int]:
    """The PostgreSQL backends the services hold on the benchmark's database."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [row[0] for row in rows]


def own_cpu_wrk(url: str, connections: int, duration: int, server_pid: int, db_url: str):
    """wrk's load, and the CPU seconds per request it cost: the service's processes, the
    database backends serving it, and wrk itself, each read from the kernel's counters
    for those processes only (the machine's other work does not count)."""
    subprocess.run(["wrk", "-t2", f"-c{connections}", "-d1s", url], capture_output=True)
    backends = backend_pids(db_url)
    before = tree_cpu_seconds(server_pid) + sum(tree_cpu_seconds(pid) for pid in backends)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = wrk(url, connections, duration, warm=False)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = tree_cpu_seconds(server_pid) + sum(tree_cpu_seconds(pid) for pid in backends)
    wrk_cpu = (after_children.ru_utime + after_children.ru_stime) - (
        children.ru_utime + children.ru_stime
    )
    requests = load.rps * duration
    load.own_cpu_us = (after - before + wrk_cpu) / requests * 1e6
    return load


def baseline_source(revision: str | None, folder: Path) -> str:
    """Unpack src/ of the commit before telemetry (or `revision`) into folder; its id."""
    root = BENCH_DIR.parent
    if revision is None:
        added = subprocess.run(
            ["git", "log", "--diff-filter=A", "--format=%H", "--", TELEMETRY_PACKAGE],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        if not added:
            raise SystemExit("no commit adds the telemetry package: give --baseline REV")
        revision = f"{added[-1]}^"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=root, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    archive = subprocess.run(
        ["git", "archive", commit, "src"], cwd=root, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return commit


def observability_variants(sink: OtlpSink, baseline_src: Path) -> dict[str, dict[str, str]]:
    """Each load's environment on top of the benchmark's."""
    traces = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_SERVICE_NAME": "backend-flask"}
    return {
        "today": {"PYTHONPATH": str(baseline_src)},  # the code before telemetry existed
        "off": {},
        "traces 100%": {**traces, "OTEL_TRACES_SAMPLER": "parentbased_always_on"},
        "traces 10%": {
            **traces,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
        "metrics": {"CRUDDUR_METRICS_PORT": str(free_port())},
    }


def measure_observability(url: str, args: argparse.Namespace, connections: int) -> None:
    sink = OtlpSink()
    with tempfile.TemporaryDirectory(prefix="cruddur-baseline-") as folder:
        commit = baseline_source(args.baseline, Path(folder))
        variants = observability_variants(sink, Path(folder, "src"))
        services = {}
        try:
            for name, env in variants.items():
                services[name] = start_service(
                    url, "granian", args.workers, args.threads, env=env,
                    # The baseline's own CLI: its serve, its factory, its code.
                    command=[sys.executable, "-m", "cruddur"] if name == "today" else None,
                )  # fmt: skip
            loads: dict[str, list[Load]] = {name: [] for name in variants}
            names = list(variants)
            for round_number in range(1, args.rounds + 1):
                # A different order each round, so no load always follows the same one.
                shift = (round_number - 1) % len(names)
                for name in names[shift:] + names[:shift]:
                    base = services[name][1]
                    process = services[name][0]
                    loads[name].append(
                        own_cpu_wrk(
                            f"{base}/api/activities/home", connections, args.duration,
                            process.pid, url,
                        )
                    )  # fmt: skip
                print(f"  round {round_number}: " + ", ".join(
                    f"{name} {runs[-1].rps:,.0f}/s {runs[-1].own_cpu_us:,.0f} µs"
                    for name, runs in loads.items()
                ))  # fmt: skip
        finally:
            for process, _ in services.values():
                process.terminate()
                process.wait(timeout=30)
            sink.close()
    results = {name: median_load(runs, loads["today"]) for name, runs in loads.items()}
    # What a machine that runs only this would serve: requests/s in inverse proportion to
    # the CPU each request costs (server, database, load tool), when the CPU is the limit.
    cpu_shares = {
        name: statistics.median(
            base.own_cpu_us / load.own_cpu_us
            for load, base in zip(runs, loads["today"], strict=True)
        )
        for name, runs in loads.items()
    }
    own_cpu = {
        name: statistics.median(load.own_cpu_us for load in runs) for name, runs in loads.items()
    }
    print()
    print(
        f"GET /api/activities/home (20 cruds), granian, {args.workers} workers x "
        f"{args.threads} threads, {connections} connections; median of {args.rounds} "
        f"interleaved rounds of {args.duration} s; today = {commit}; "
        f"{sink.exports:,} OTLP exports received ({sink.bytes / 1e6:,.1f} MB)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min)")
    print(
        "| load | req/s | p50 ms | p99 ms | its CPU µs/req | of today's req/s "
        "| of today's, from CPU/req | target |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, load in results.items():
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            met = "met" if min(load.share, cpu_shares[name]) >= target else "NOT met"
            verdict = f"≥ {target:.0%}: {met}"
        print(
            f"| {name} | {load.rps:,.0f} | {load.p50_ms:.2f} | {load.p99_ms:.2f} "
            f"| {own_cpu[name]:,.0f} | {load.share:.1%} | {cpu_shares[name]:.1%} | {verdict} |"
        )


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
        VENV_BIN / "cruddur", "serve", "--server", server, "--port", str(port),
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
    process = subprocess.Popen(
        argv, env=clean, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    ready = "/api/activities/home" if server == "bare" else "/api/health"
    for _ in range(150):
        try:
            with urllib.request.urlopen(f"{base}{ready}", timeout=2) as response:
                if response.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{server} did not start")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(
    url: str,
    connections: int,
    duration: int,
    script: str | None = None,
    *,
    warm: bool = True,
    headers: tuple[str, ...] = (),
) -> Load:
    extra = ["-s", script] if script else []
    for header in headers:
        extra += ["-H", header]
    if warm:
        subprocess.run(["wrk", "-t2", f"-c{connections}", "-d1s", *extra, url], capture_output=True)
    out, cpu = timed(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", *extra, url])
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return Load(rps, p50, p99, cpu / requests * 1e6, requests=requests)


def pgbench_binary() -> str:
    return shutil.which("pgbench") or str(
        embedded_server(Settings.from_env()).bin_dir() / "pgbench"
    )


def pgbench(url: str, connections: int, duration: int, mode: str = "prepared") -> Load:
    binary = pgbench_binary()
    sql = template("activities", "home")
    for placeholder, value in FIRST_PAGE.items():
        sql = sql.replace(placeholder, value)
    sql = " ".join(line for line in sql.splitlines() if not line.startswith("--"))
    conninfo, password = without_password(url)
    env = {**os.environ, "PGPASSWORD": password or ""}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder, "home.sql")
        script.write_text(sql + "\n")
        command = [
            binary, "-n", "-M", mode, "-f", str(script), "-c", str(connections),
            "-j", "2", "-l", f"--log-prefix={folder}/log", conninfo,
        ]  # fmt: skip
        subprocess.run([*command, "-T", "1"], env=env, capture_output=True, cwd=folder, check=True)
        for old in Path(folder).glob("log*"):
            old.unlink()
        out, cpu = timed([*command, "-T", str(duration)], env=env, cwd=folder)
        latencies = sorted(
            int(line.split()[2]) / 1000
            for log in Path(folder).glob("log*")
            for line in log.read_text().splitlines()
        )
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    cuts = statistics.quantiles(latencies, n=100)
    transactions = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    return Load(tps, cuts[49], cuts[98], cpu / transactions * 1e6)


def median_load(loads: list[Load], baseline: list[Load]) -> Load:
    return Load(
        statistics.median(load.rps for load in loads),
        statistics.median(load.p50_ms for load in loads),
        statistics.median(load.p99_ms for load in loads),
        statistics.median(load.cpu_us for load in loads),
        statistics.median(load.rps / base.rps for load, base in zip(loads, baseline, strict=True)),
    )


def measure_size(url: str, args: argparse.Namespace, connections: int) -> dict[str, Load]:
    """Medians over interleaved rounds: pgbench, then each server, round after round,
    so a noisy moment of the machine falls on all of them alike."""
    servers = args.servers.split(",")
    services = {name: start_service(url, name, args.workers, args.threads) for name in servers}
    loads: dict[str, list[Load]] = {name: [] for name in ["pgbench", "pgbench -M simple", *servers]}
    try:
        for round_number in range(1, args.rounds + 1):
            # Prepared, as psycopg runs it after 5 uses on a connection; and pgbench's
            # default protocol, which parses and plans the SQL every time.
            loads["pgbench"].append(pgbench(url, connections, args.duration))
            loads["pgbench -M simple"].append(
                pgbench(url, connections, args.duration, mode="simple")
            )
            for name, (_, base) in services.items():
                loads[name].append(wrk(f"{base}/api/activities/home", connections, args.duration))
            print(f"  round {round_number}: " + ", ".join(
                f"{name} {runs[-1].rps:,.0f}/s" for name, runs in loads.items()
            ))  # fmt: skip
    finally:
        for process, _ in services.values():
            process.terminate()
            process.wait(timeout=20)
    return {name: median_load(runs, loads["pgbench"]) for name, runs in loads.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", help="activities per database [1000,1000000; 1000 with --observability]"
    )
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians kept")
    parser.add_argument(
        "--servers",
        default="gunicorn-uncached,granian-uncached,bare",
        help="bare: bench/bare_feed.py, the floor; granian, gunicorn: with the feed cache on",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--connections", type=int, default=8, help="wrk connections and pgbench clients"
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="measure telemetry's cost instead (off, traces 100%%/10%%, metrics, against today)",
    )
    parser.add_argument(
        "--baseline",
        help="with --observability: the commit that is 'today' (default: the "
        "one before the telemetry package was added)",
    )
    args = parser.parse_args()
    args.sizes = args.sizes or ("1000" if args.observability else "1000,1000000")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    connections = args.connections
    base = server_url()
    results: dict[int, dict[str, Load]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        url = with_database(base, f"cruddur_bench_feed_{size}")
        print(f"size {size:,}:")
        build(url, size, args.users)
        if args.observability:
            measure_observability(url, args, connections)
            continue
        results[size] = measure_size(url, args, connections)
    if args.observability:
        return
    smallest = results[min(results)]
    print()
    print(
        f"{connections} connections; {args.workers} workers x {args.threads} threads; "
        f"median of {args.rounds} interleaved rounds of {args.duration} s; latency in ms"
    )
    print(
        "| activities | load | req/s | p50 | p99 | CPU µs/req | of prepared pgbench's req/s "
        "| p50 vs smallest table |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for size, loads in results.items():
        for name, load in loads.items():
            against_smallest = load.p50_ms / smallest[name].p50_ms
            print(
                f"| {size:,} | {name} | {load.rps:,.0f} | {load.p50_ms:.2f} | {load.p99_ms:.2f} "
                f"| {load.cpu_us:,.0f} | {load.share:.0%} | {against_smallest:.2f}x |"
            )


if __name__ == "__main__":
    main()
