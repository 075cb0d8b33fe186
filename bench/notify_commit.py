"""What a NOTIFY costs the writes: inserts a second with pgbench, side by side.

  - plain: the insert alone (what the API runs);
  - trigger: the same insert with a statement trigger that NOTIFYs (the design not
    taken: every notifying transaction holds a database-wide lock until its commit is
    flushed, so they commit one at a time);
  - notifier: the insert alone, while another pgbench sends NOTIFY in its own
    transactions with synchronous_commit off at --notify-rate a second (what the API's
    FeedNotifier does, at most one per 5 ms per worker).
Interleaved rounds; the ratio is the median of each round's ratio to plain.

Usage: .venv/bin/python bench/notify_commit.py [--rounds 3] [--duration 3] [--clients 16]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from feed import build, pgbench_binary, server_url

from cruddur.db import Db
from cruddur.urls import with_database, without_password

TRIGGER = """
CREATE OR REPLACE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_notify('cruddur_feed', ''); RETURN NULL; END $$;
CREATE TRIGGER bench_notify AFTER INSERT ON activities
  FOR EACH STATEMENT EXECUTE FUNCTION bench_notify();
"""


def tps(url: str, script: str, clients: int, seconds: int, *extra: str, env=None) -> float:
    conninfo, password = without_password(url)
    out = subprocess.run(
        [pgbench_binary(), "-n", "-M", "prepared", "-f", script, "-c", str(clients),
         "-j", "2", "-T", str(seconds), *extra, conninfo],
        env={**os.environ, "PGPASSWORD": password or "", **(env or {})},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--notify-rate", type=int, default=400)
    args = parser.parse_args()
    url = with_database(server_url(), "cruddur_bench_notify")
    build(url, 1000, 100)
    with Db(url) as db:
        author = db.query_value("SELECT uuid FROM users WHERE handle = 'andrewbrown'")
    results: dict[str, list[float]] = {"plain": [], "trigger": [], "notifier": []}
    with tempfile.TemporaryDirectory() as folder:
        insert = Path(folder, "insert.sql")
        values = f"('{author}', 'bench', now() + interval '1 day')"  # a uuid we read
        insert.write_text(
            f"INSERT INTO activities (user_uuid, message, expires_at) VALUES {values};\n"  # noqa: S608
        )
        notify = Path(folder, "notify.sql")
        notify.write_text("NOTIFY cruddur_feed;\n")
        for round_number in range(1, args.rounds + 1):
            results["plain"].append(tps(url, str(insert), args.clients, args.duration))
            with Db(url, autocommit=True) as db:
                for statement in TRIGGER.strip().split(";\n"):
                    db.query_commit(statement)
            results["trigger"].append(tps(url, str(insert), args.clients, args.duration))
            with Db(url, autocommit=True) as db:
                db.query_commit("DROP TRIGGER bench_notify ON activities")
            conninfo, password = without_password(url)
            notifier = subprocess.Popen(
                [pgbench_binary(), "-n", "-f", str(notify), "-c", "2", "-j", "1",
                 "-T", str(args.duration), "-R", str(args.notify_rate), conninfo],
                env={**os.environ, "PGPASSWORD": password or "",
                     "PGOPTIONS": "-c synchronous_commit=off"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            results["notifier"].append(tps(url, str(insert), args.clients, args.duration))
            notifier.wait(timeout=60)
            print(f"  round {round_number}: " + ", ".join(
                f"{name} {values[-1]:,.0f}/s" for name, values in results.items()
            ))  # fmt: skip
    print()
    print(f"{args.clients} clients, {args.rounds} interleaved rounds of {args.duration} s")
    print("| inserts | tps (median) | against plain |")
    print("|---|---:|---:|")
    for name, values in results.items():
        share = statistics.median(v / p for v, p in zip(values, results["plain"], strict=True))
        print(f"| {name} | {statistics.median(values):,.0f} | {share:.0%} |")


if __name__ == "__main__":
    main()
