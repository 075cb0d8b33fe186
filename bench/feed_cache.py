"""The home feed's kept first page under load: with and without the cache, the floor,
304s, and how many statements reach PostgreSQL per 1,000 requests.

For each size (a database built as bench/feed.py builds it), in interleaved rounds:
  - `cruddur serve` (granian) with the feed cache off: every request reads the database;
  - the same with the cache on (the default);
  - bench/bare_feed.py, the floor (Flask and psycopg, nothing else, the same SQL);
  - the cached API answering `If-None-Match` with the page's ETag: 304s, no body.
The ratios are medians of each round's ratio. Then, once per size, the statements: the
database's committed transactions (pg_stat_database.xact_commit; the API runs each
statement as its own transaction) during one load of each API, read after its sessions
have flushed their statistics, per 1,000 requests answered.

Usage: .venv/bin/python bench/feed_cache.py [--sizes 1000,1000000] [--rounds 3]
       [--duration 4] [--connections 8] [--workers 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
import urllib.request

from loads import Load, load_options, median_load, print_table, require_wrk, round_ratio, wrk
from stage import build, server_url, services, start_service, stop

from cruddur.db import Db
from cruddur.urls import with_database

LOADS = ("uncached", "cached", "bare", "304")
SERVERS = {"uncached": "granian-uncached", "cached": "granian", "bare": "bare"}
QUIET = "uncached, no request log"  # with --quiet: the request log line's share
STATS_FLUSH_SECONDS = 11  # an idle backend reports its statistics within 10 s


def commits(url: str) -> int:
    with Db(url, autocommit=True) as db:
        return db.query_value(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )


def etag_of_first_page(base: str) -> str:
    with urllib.request.urlopen(f"{base}/api/activities/home", timeout=5) as response:
        return response.headers["ETag"]


def statements_per_1000(url: str, server: str, args: argparse.Namespace) -> float:
    """Alone on the database: one service, warmed up, then one measured load."""
    process, base = start_service(url, server, args.workers, args.threads)
    try:
        wrk(f"{base}/api/activities/home", args.connections, 1)
        time.sleep(STATS_FLUSH_SECONDS)
        before = commits(url)
        load = wrk(f"{base}/api/activities/home", args.connections, args.duration, warm=False)
        time.sleep(STATS_FLUSH_SECONDS)
        # Our own read of the counter is a transaction.
        return (commits(url) - before - 1) / load.requests * 1000
    finally:
        stop(process)


def measure(url: str, args: argparse.Namespace) -> tuple[dict[str, list[Load]], dict[str, float]]:
    servers = dict(SERVERS)
    if args.quiet:
        servers[QUIET] = "granian-uncached-quiet"
    runs: dict[str, list[Load]] = {name: [] for name in [*LOADS, *servers]}
    with services(url, servers, args.workers, args.threads) as bases:
        home = {name: f"{base}/api/activities/home" for name, base in bases.items()}
        etag = etag_of_first_page(bases["cached"])
        for round_number in range(1, args.rounds + 1):
            for name in servers:
                runs[name].append(wrk(home[name], args.connections, args.duration))
            runs["304"].append(
                wrk(home["cached"], args.connections, args.duration,
                    headers=(f"If-None-Match: {etag}",))
            )  # fmt: skip
            print(f"  round {round_number}: " + ", ".join(
                f"{name} {loads[-1].rps:,.0f}/s" for name, loads in runs.items()
            ))  # fmt: skip
    statements = {
        name: statements_per_1000(url, SERVERS[name], args) for name in ("uncached", "cached")
    }
    return runs, statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,1000000")
    load_options(parser, rounds=3, duration=4, connections=8, workers=2, threads=1, users=1000)
    parser.add_argument(
        "--quiet", action="store_true", help="also the API without its request log line"
    )
    args = parser.parse_args()
    require_wrk()
    base = server_url()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        url = with_database(base, f"cruddur_bench_feed_{size}")
        print(f"size {size:,}:")
        build(url, size, args.users)
        runs, statements = measure(url, args)
        rows.append((size, runs, statements))
    print()
    print(
        f"{args.connections} connections; granian {args.workers} workers x {args.threads} "
        f"threads; median of {args.rounds} interleaved rounds of {args.duration} s"
    )
    names = {
        "uncached": "API, cache off",
        "cached": "API, cache on",
        "bare": "floor (bare_feed.py)",
        "304": "API, cache on, If-None-Match → 304",
        QUIET: "API, cache off, no request log (CRUDDUR_LOG_LEVEL=warning)",
    }
    table = []
    for size, runs, statements in rows:
        for name, loads in runs.items():
            load = median_load(loads, runs["uncached"])
            table.append([
                f"{size:,}", names[name], f"{load.rps:,.0f}", f"{load.p50_ms:.2f}",
                f"{load.p99_ms:.2f}", f"{load.cpu_us:,.0f}", f"{load.share:.2f}x",
                f"{round_ratio(loads, runs['bare']):.0%}",
                f"{statements[name]:,.1f}" if name in statements else "",
            ])  # fmt: skip
    print_table(
        ["activities", "load", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "against uncached",
         "against the floor", "statements per 1,000 requests"],
        "rlrrrrrrr",
        table,
    )  # fmt: skip


if __name__ == "__main__":
    main()
