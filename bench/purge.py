"""Purging expired cruds under load: wall time, the home feed's p99 during the purge
against without it, and the table's and indexes' size before and after.

1. A database of --activities fake activities (as bench/feed.py builds it); the oldest
   --expired of them are made to have expired a week ago, the rest to expire in 30 days;
   then VACUUM FULL ANALYZE, so "before" is a compact table.
2. `cruddur serve` (granian) with the feed cache off, so every feed request reads the
   table being purged.
3. The feed under wrk in short runs: --baseline runs before the purge, then runs back to
   back for as long as `cruddur db purge-expired` (default grace, batch size and nice
   ratio) takes.
4. The sizes after the purge, and after a plain VACUUM (what autovacuum would do).

Usage: .venv/bin/python bench/purge.py [--activities 1000000] [--expired 500000]
       [--connections 8] [--run-seconds 2] [--baseline 5] [--nice-ratio R]
"""

from __future__ import annotations

import argparse
import atexit
import os
import statistics
import subprocess
import time

from loads import load_options, print_table, require_wrk, wrk
from stage import CRUDDUR, bench_database, build, drop_database, start_service, stop

from cruddur.db import Db

SIZES = """
SELECT pg_relation_size('activities'), pg_indexes_size('activities'),
       pg_total_relation_size('activities'), (SELECT count(*) FROM activities)
"""


def sizes(url: str) -> tuple[int, int, int, int]:
    with Db(url, autocommit=True) as db:
        return db.query_rows(SIZES)[0]


def make_expired(url: str, expired: int) -> None:
    with Db(url, autocommit=True) as db:
        db.query_commit(
            "WITH ranked AS (SELECT uuid, row_number() OVER (ORDER BY created_at, uuid) AS n"
            " FROM activities)"
            " UPDATE activities SET expires_at = CASE WHEN ranked.n <= %(expired)s"
            "   THEN activities.created_at + interval '1 hour'"
            "   ELSE now() + interval '30 days' END,"
            " created_at = CASE WHEN ranked.n <= %(expired)s"
            "   THEN least(activities.created_at, now() - interval '8 days')"
            "   ELSE activities.created_at END"
            " FROM ranked WHERE ranked.uuid = activities.uuid",
            {"expired": expired},
        )
        db.query_commit("VACUUM FULL ANALYZE activities")


def mb(n: int) -> str:
    return f"{n / 1024 / 1024:,.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activities", type=int, default=1_000_000)
    parser.add_argument("--expired", type=int, default=500_000)
    load_options(parser, connections=8, users=1000)
    parser.add_argument("--run-seconds", type=int, default=2)
    parser.add_argument("--baseline", type=int, default=5, help="wrk runs before the purge")
    parser.add_argument(
        "--nice-ratio", help="the purge's --nice-ratio (default: the command's own default)"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="use bench/feed.py's database of this size (cruddur_bench_feed_N) as it is, "
        "instead of building one (it is changed: run feed.py again afterwards)",
    )
    args = parser.parse_args()
    require_wrk()
    if args.reuse:
        url = bench_database(f"cruddur_bench_feed_{args.activities}")
    else:
        url = bench_database("cruddur_bench_purge")
        atexit.register(drop_database, url)  # ~400 MB at the default size, left behind
        build(url, args.activities, args.users)
    started = time.perf_counter()
    make_expired(url, args.expired)
    print(f"  {args.expired:,} made expired, VACUUM FULL in {time.perf_counter() - started:.0f} s")
    before = sizes(url)
    process, base = start_service(url, "granian-uncached", 2, 1)
    feed = f"{base}/api/activities/home"
    try:
        quiet = [wrk(feed, args.connections, args.run_seconds) for _ in range(args.baseline)]
        ratio = ["--nice-ratio", args.nice_ratio] if args.nice_ratio is not None else []
        purge = subprocess.Popen(
            [CRUDDUR, "db", "purge-expired", *ratio],
            env={**os.environ, "CONNECTION_URL": url},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        purge_started = time.perf_counter()
        during = []
        while purge.poll() is None and time.perf_counter() - purge_started < 900:
            during.append(wrk(feed, args.connections, args.run_seconds))
        _, purge_log = purge.communicate(timeout=900)
        wall = time.perf_counter() - purge_started
        after_quiet = [wrk(feed, args.connections, args.run_seconds) for _ in range(args.baseline)]
    finally:
        stop(process)
    if purge.returncode != 0:
        raise SystemExit(f"the purge failed:\n{purge_log}")
    after = sizes(url)
    with Db(url, autocommit=True) as db:
        vacuum_started = time.perf_counter()
        db.query_commit("VACUUM activities")
        vacuum_seconds = time.perf_counter() - vacuum_started
    vacuumed = sizes(url)
    summary = [line for line in purge_log.splitlines() if "deleted" in line]
    print(summary[-1] if summary else purge_log)

    def p99(loads: list) -> str:
        values = sorted(x.p99_ms for x in loads)
        return f"{statistics.median(values):.2f} (worst {values[-1]:.2f})"

    print()
    print(f"purge wall time: {wall:.1f} s; plain VACUUM after it: {vacuum_seconds:.1f} s")
    print_table(
        [f"home feed (cache off), wrk runs of {args.run_seconds} s", "runs", "req/s",
         "p99 ms, median (worst)"],
        "lrrr",
        [
            [name, len(loads), f"{statistics.median(x.rps for x in loads):,.0f}", p99(loads)]
            for name, loads in [("before the purge", quiet), ("during the purge", during),
                                ("after the purge", after_quiet)]
        ],
    )  # fmt: skip
    during_p99 = statistics.median(x.p99_ms for x in during)
    before_p99 = statistics.median(x.p99_ms for x in quiet)
    around_p99 = statistics.median(x.p99_ms for x in quiet + after_quiet)
    # Against before only, and against the runs on both sides (the machine's drift).
    print(f"p99 during / before: {during_p99 / before_p99:.2f}x; "
          f"during / before and after: {during_p99 / around_p99:.2f}x")  # fmt: skip
    print()
    print_table(
        ["activities table", "rows", "heap", "indexes", "total"],
        "lrrrr",
        [
            [name, f"{rows:,}", mb(heap), mb(indexes), mb(total)]
            for name, (heap, indexes, total, rows) in [
                ("before (after VACUUM FULL)", before),
                ("after the purge", after),
                ("after the purge and VACUUM", vacuumed),
            ]
        ],
    )


if __name__ == "__main__":
    main()
