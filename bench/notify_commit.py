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
import atexit
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from loads import load_options, pgbench_binary, pgbench_target, print_table
from stage import bench_database, build, drop_database

from cruddur.db import Db

TRIGGER = """
CREATE OR REPLACE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_notify('cruddur_feed', ''); RETURN NULL; END $$;
CREATE TRIGGER bench_notify AFTER INSERT ON activities
  FOR EACH STATEMENT EXECUTE FUNCTION bench_notify();
"""


def tps(url: str, script: str, clients: int, seconds: int, *extra: str, env=None) -> float:
    conninfo, full_env = pgbench_target(url, env)
    out = subprocess.run(
        [pgbench_binary(), "-n", "-M", "prepared", "-f", script, "-c", str(clients),
         "-j", "2", "-T", str(seconds), *extra, conninfo],
        env=full_env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    load_options(parser, rounds=3, duration=3)
    parser.add_argument("--clients", type=int, default=16, help="pgbench's clients")
    parser.add_argument("--notify-rate", type=int, default=400)
    args = parser.parse_args()
    url = bench_database("cruddur_bench_notify")
    atexit.register(drop_database, url)  # left behind, it was nobody's to reuse
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
            conninfo, env = pgbench_target(url, {"PGOPTIONS": "-c synchronous_commit=off"})
            notifier = subprocess.Popen(
                [pgbench_binary(), "-n", "-f", str(notify), "-c", "2", "-j", "1",
                 "-T", str(args.duration), "-R", str(args.notify_rate), conninfo],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            results["notifier"].append(tps(url, str(insert), args.clients, args.duration))
            notifier.wait(timeout=60)
            print(f"  round {round_number}: " + ", ".join(
                f"{name} {values[-1]:,.0f}/s" for name, values in results.items()
            ))  # fmt: skip
    print()
    print(f"{args.clients} clients, {args.rounds} interleaved rounds of {args.duration} s")
    print_table(
        ["inserts", "tps (median)", "against plain"],
        "lrr",
        [
            [name, f"{statistics.median(values):,.0f}", f"{share:.0%}"]
            for name, values in results.items()
            for share in [
                statistics.median(v / p for v, p in zip(values, results["plain"], strict=True))
            ]
        ],
    )


if __name__ == "__main__":
    main()
