"""The home feed with reads on a streaming replica, and through PgBouncer, against
everything on one server directly: in one run, interleaved rounds.

A primary and a replica of the bench's own (tests/replica_support.py: the embedded
server's binaries, pg_basebackup -R), the schema, the seed and `--activities` fake cruds;
then `cruddur serve` four ways, each loaded with wrk (GET /api/activities/home):
  direct    CONNECTION_URL = the primary (prepared statements, generic plans)
  replica   the same, with READER_CONNECTION_URL = the replica
  no-prep   the primary directly, in pooler mode (no prepared statements, no options):
            what leaving out prepared statements costs, without PgBouncer's hop
  pgbouncer through PgBouncer (pool_mode = transaction) in pooler mode
For each: requests/s (and its ratio to `direct` in the same round), p50, p99, and the
primary's own CPU time per request (its postmaster and backends, from /proc).

Usage: .venv/bin/python bench/scale_out.py [--activities 100000] [--rounds 3]
       [--duration 4] [--connections 8]
Needs wrk and pgbouncer (Debian: apt-get install wrk pgbouncer).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
sys.path.insert(0, str(BENCH_DIR))

from loads import Load, load_options, wrk  # noqa: E402
from pgbouncer_support import PgBouncer  # noqa: E402
from replica_support import ReplicaPair  # noqa: E402
from stage import seed_fake, start_service, stop, vacuum_analyze  # noqa: E402


def postgres_cpu_seconds(data_dir: Path) -> float:
    """CPU time of a PostgreSQL server so far: its postmaster (with the backends it has
    reaped) and its live backends."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")

    def times(pid: int, with_children: bool) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used = int(fields[11]) + int(fields[12])  # utime, stime
        if with_children:
            used += int(fields[13]) + int(fields[14])  # cutime, cstime
        return used / tick

    total = times(postmaster, True)
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(postmaster)], capture_output=True, text=True
    ).stdout.split()
    for child in children:
        # One that ended meanwhile is counted in the postmaster's children.
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += times(int(child), False)
    return total


def build(pair: ReplicaPair, activities: int) -> None:
    started = time.perf_counter()
    seed_fake(pair.primary_url, activities, 1000, stdout=subprocess.DEVNULL)
    vacuum_analyze(pair.primary_url)
    pair.wait_caught_up(timeout=300)
    print(
        f"{activities:,} activities loaded and replicated in {time.perf_counter() - started:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=100_000)
    load_options(parser, rounds=3, duration=4, connections=8, workers=2, threads=1)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="cruddur-scale-out-"))
    pair = ReplicaPair(scratch).create()
    cluster = pair.primary.cluster_dir  # its state says where (read while it is there)
    bouncer = None
    try:
        build(pair, args.activities)
        bouncer = PgBouncer(pair.primary_url, pool_size=args.workers * args.threads)
        setups = {
            "direct": {"CONNECTION_URL": pair.primary_url},
            "replica": {
                "CONNECTION_URL": pair.primary_url,
                "READER_CONNECTION_URL": pair.replica_url,
            },
            "no-prep": {"CONNECTION_URL": pair.primary_url, "CRUDDUR_POOLER": "transaction"},
            "pgbouncer": {
                "CONNECTION_URL": bouncer.url_for(pair.primary_url),
                "CRUDDUR_POOLER": "transaction",
            },
        }
        results: dict[str, list[tuple[Load, float, float]]] = {name: [] for name in setups}
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number}/{args.rounds}")
            for name, env in setups.items():
                os.environ.update({"READER_CONNECTION_URL": "", "CRUDDUR_POOLER": "", **env})
                # Uncached: pooler mode turns the feed cache off, and `direct` with it on
                # served its feed from memory (unless CRUDDUR_FEED_CACHE=0 was set).
                process, base = start_service(
                    env["CONNECTION_URL"], "granian-uncached", args.workers, args.threads
                )
                try:
                    time.sleep(1.5)  # the replica's watcher takes its first look
                    before = postgres_cpu_seconds(pair.primary.data_dir)
                    load = wrk(f"{base}/api/activities/home", args.connections, args.duration)
                    primary_cpu = postgres_cpu_seconds(pair.primary.data_dir) - before
                finally:
                    stop(process, timeout=10)
                requests = load.rps * args.duration
                results[name].append((load, primary_cpu / requests * 1e6, load.rps))
                per_request = primary_cpu / requests * 1e6
                print(f"  {name:<10} {load.rps:8,.0f} req/s  primary {per_request:6.0f} µs/req")
        print()
        print(
            f"{'setup':<10} {'req/s':>8} {'vs direct':>10} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'primary CPU µs/req':>19}"
        )
        for name, rows in results.items():
            ratios = [
                rows[i][2] / results["direct"][i][2] for i in range(len(rows))
            ]  # same round, seconds apart
            print(
                f"{name:<10} {statistics.median(r[0].rps for r in rows):8,.0f} "
                f"{statistics.median(ratios):9.2f}x "
                f"{statistics.median(r[0].p50_ms for r in rows):7.2f} "
                f"{statistics.median(r[0].p99_ms for r in rows):7.2f} "
                f"{statistics.median(r[1] for r in rows):19.0f}"
            )
    finally:
        if bouncer is not None:
            bouncer.stop()
        pair.remove()
        # Its state (the throwaway cluster's password, its log) went nowhere else.
        shutil.rmtree(cluster, ignore_errors=True)
        with contextlib.suppress(OSError):  # the folder made for it, in the shared place
            cluster.parent.rmdir()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
