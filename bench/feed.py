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
size, under granian, with the feed cache off (every request reads the database): "today"
is this code with nothing observed (no request log line, no traces, no metrics: the
edge does what it did before telemetry existed), or the code of --baseline REV (from
git); then this code with observability off (the defaults: the JSON request log on
stdout), traces at 100% and at 10% sampling to a local OTLP/HTTP receiver (this process,
which reads and discards them), and metrics on; each round's share of today's
requests/s, median kept.

Usage: .venv/bin/python bench/feed.py [--sizes 1000,1000000] [--duration 4] [--rounds 5]
       [--servers gunicorn,granian,bare] [--workers 2] [--threads 1]
       .venv/bin/python bench/feed.py --observability [--sizes 1000] [--baseline REV]
Needs wrk (Debian: apt-get install wrk) and pgbench (PostgreSQL's, found with the server
binaries). The server is CRUDDUR_BENCH_URL's when set, else the embedded one.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from loads import (
    Load,
    load_options,
    median_load,
    pgbench,
    print_table,
    require_wrk,
    sql_for,
    wrk,
)
from stage import BENCH_DIR, build, free_port, server_url, services, start_service, stop

# The tests' OTLP receiver, here decoding nothing (--observability).
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
from otlp_receiver import OtlpReceiver

from cruddur.urls import with_database

# The first page of the home feed, as pgbench runs it.
FIRST_PAGE = {
    "limit": "20",
    "before_created_at": "'infinity'",
    "before_uuid": "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
}


# -- the cost of observability ------------------------------------------------------

TARGETS = {"off": 0.98, "traces 10%": 0.90, "metrics": 0.95}  # of today's req/s (issue 14)


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


def baseline_source(revision: str, folder: Path) -> str:
    """Unpack src/ of `revision` into folder; its short id."""
    root = BENCH_DIR.parent
    commit = subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=root, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    archive = subprocess.run(
        ["git", "archive", commit, "src"], cwd=root, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return commit


def observability_variants(
    sink: OtlpReceiver, baseline_src: Path | None
) -> dict[str, dict[str, str]]:
    """Each load's environment on top of the benchmark's (CRUDDUR_FEED_CACHE=0 for all)."""
    traces = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_SERVICE_NAME": "backend-flask"}
    # Today: this code with nothing observed, so that only observability differs (the
    # commit before telemetry is 100 commits behind: the feed's path changed since).
    today = {"CRUDDUR_LOG_LEVEL": "warning"}
    if baseline_src is not None:
        today = {"PYTHONPATH": str(baseline_src)}
    return {
        "today": today,
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
    sink = OtlpReceiver(decode=False)
    with tempfile.TemporaryDirectory(prefix="cruddur-baseline-") as folder:
        commit = "this code, request log off"
        if args.baseline:
            commit = baseline_source(args.baseline, Path(folder))
        variants = observability_variants(sink, Path(folder, "src") if args.baseline else None)
        services = {}
        try:
            for name, env in variants.items():
                services[name] = start_service(
                    url, "granian-uncached", args.workers, args.threads, env=env,
                    # The baseline's own CLI: its serve, its factory, its code.
                    command=[sys.executable, "-m", "cruddur"]
                    if name == "today" and args.baseline else None,
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
            stop(*(process for process, _ in services.values()), timeout=30)
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

    def verdict(name: str, load: Load) -> str:
        target = TARGETS.get(name)
        if target is None:
            return ""
        met = "met" if min(load.share, cpu_shares[name]) >= target else "NOT met"
        return f"≥ {target:.0%}: {met}"

    print_table(
        ["load", "req/s", "p50 ms", "p99 ms", "its CPU µs/req", "of today's req/s",
         "of today's, from CPU/req", "target"],
        "lrrrrrrl",
        [
            [name, f"{load.rps:,.0f}", f"{load.p50_ms:.2f}", f"{load.p99_ms:.2f}",
             f"{own_cpu[name]:,.0f}", f"{load.share:.1%}", f"{cpu_shares[name]:.1%}",
             verdict(name, load)]
            for name, load in results.items()
        ],
    )  # fmt: skip


def measure_size(url: str, args: argparse.Namespace, connections: int) -> dict[str, Load]:
    """Medians over interleaved rounds: pgbench, then each server, round after round,
    so a noisy moment of the machine falls on all of them alike."""
    servers = args.servers.split(",")
    sql = sql_for("activities/home", FIRST_PAGE)
    loads: dict[str, list[Load]] = {name: [] for name in ["pgbench", "pgbench -M simple", *servers]}
    with services(url, {name: name for name in servers}, args.workers, args.threads) as bases:
        for round_number in range(1, args.rounds + 1):
            # Prepared, as psycopg runs it after 5 uses on a connection; and pgbench's
            # default protocol, which parses and plans the SQL every time.
            loads["pgbench"].append(pgbench(url, sql, connections, args.duration))
            loads["pgbench -M simple"].append(
                pgbench(url, sql, connections, args.duration, mode="simple")
            )
            for name, base in bases.items():
                loads[name].append(wrk(f"{base}/api/activities/home", connections, args.duration))
            print(f"  round {round_number}: " + ", ".join(
                f"{name} {runs[-1].rps:,.0f}/s" for name, runs in loads.items()
            ))  # fmt: skip
    return {name: median_load(runs, loads["pgbench"]) for name, runs in loads.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", help="activities per database [1000,1000000; 1000 with --observability]"
    )
    # --connections: wrk's, and as many pgbench clients.
    load_options(parser, rounds=5, duration=4, connections=8, workers=2, threads=1, users=1000)
    parser.add_argument(
        "--servers",
        default="gunicorn-uncached,granian-uncached,bare",
        help="bare: bench/bare_feed.py, the floor; granian, gunicorn: with the feed cache on",
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="measure telemetry's cost instead (off, traces 100%%/10%%, metrics, against today)",
    )
    parser.add_argument(
        "--baseline",
        help="with --observability: the commit that is 'today' (default: this code "
        "with the request log off and nothing else observed)",
    )
    args = parser.parse_args()
    args.sizes = args.sizes or ("1000" if args.observability else "1000,1000000")
    require_wrk()
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
    print_table(
        ["activities", "load", "req/s", "p50", "p99", "CPU µs/req",
         "of prepared pgbench's req/s", "p50 vs smallest table"],
        "rlrrrrrr",
        [
            [f"{size:,}", name, f"{load.rps:,.0f}", f"{load.p50_ms:.2f}", f"{load.p99_ms:.2f}",
             f"{load.cpu_us:,.0f}", f"{load.share:.0%}",
             f"{load.p50_ms / smallest[name].p50_ms:.2f}x"]
            for size, loads in results.items()
            for name, load in loads.items()
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
