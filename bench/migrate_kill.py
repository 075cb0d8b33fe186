"""How soon is the migration lock free after `migrate` is killed mid-statement?

A killed client's backend learns it is gone only when it next talks to it: without
`client_connection_check_interval` a statement runs to its end first, holding the
migration's locks. Migrations set it to 1 s (runner.connect). This kills (SIGKILL) a
process that holds the lock and runs `pg_sleep(SECONDS)`, connected the migrations' way
and plainly, in interleaved rounds, and times how long the lock stays held.

Usage: .venv/bin/python bench/migrate_kill.py [--rounds 3] [--seconds 8]
The server is CRUDDUR_BENCH_URL's, else the embedded one; a database
cruddur_bench_kill is made for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid

import psycopg
from stage import bench_database, drop_database, fresh_database

from cruddur.ops.migrations import lock

# The child: connect (the migrations' way or plainly), take the lock, sleep in a statement.
CHILD = """
import sys, psycopg
from cruddur.ops.migrations import lock, runner
url, how, seconds, mark = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
conn = runner.connect(url) if how == "migrate" else psycopg.connect(url, autocommit=True)
conn.execute("SELECT pg_advisory_lock(%s)", [lock.LOCK_KEY])
conn.execute("SELECT pg_sleep(%s) /* " + mark + " */", [float(seconds)])
"""


def held_after_kill(url: str, how: str, seconds: float) -> float:
    # Its own statement, marked: any other session's pg_sleep on the server was taken for
    # it, and the child killed before it held the lock (0.00 s).
    mark = f"cruddur-bench-kill-{uuid.uuid4().hex}"
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, how, str(seconds), mark])
    with psycopg.connect(url, autocommit=True) as watcher:
        deadline = time.monotonic() + 30
        while not watcher.execute(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE %s AND state = 'active'"
            " AND datname = current_database() AND pid <> pg_backend_pid()",
            [f"%{mark}%"],
        ).fetchone():
            if time.monotonic() > deadline:
                child.kill()
                raise SystemExit("the child never started its statement")
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        killed = time.monotonic()
        while not watcher.execute("SELECT pg_try_advisory_lock(%s)", [lock.LOCK_KEY]).fetchone()[0]:
            time.sleep(0.02)
        held = time.monotonic() - killed
        watcher.execute("SELECT pg_advisory_unlock(%s)", [lock.LOCK_KEY])
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="the statement's length")
    args = parser.parse_args()
    url = bench_database("cruddur_bench_kill")
    fresh_database(url)
    times: dict[str, list[float]] = {"migrate": [], "plain": []}
    try:
        for _ in range(args.rounds):  # interleaved: the machine is shared and noisy
            for how in times:
                times[how].append(held_after_kill(url, how, args.seconds))
    finally:
        drop_database(url)
    print(f"lock held after SIGKILL during a {args.seconds:g} s statement ({args.rounds} rounds)")
    for how, label in (
        ("migrate", "client_connection_check_interval = 1s (migrations)"),
        ("plain", "a plain connection"),
    ):
        values = times[how]
        print(
            f"  {label:55} median {statistics.median(values):5.2f} s"
            f"  (min {min(values):.2f}, max {max(values):.2f})"
        )


if __name__ == "__main__":
    main()
