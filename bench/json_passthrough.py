"""How much does letting PostgreSQL build the JSON, and passing its text on, save?

Three ways to turn a feed page into a JSON response body, timed side by side in
interleaved rounds on one database (this machine is noisy, so only the ratios count):

  passthrough  Db.query_array_json: PostgreSQL builds the JSON, Python gets text
  decode       PostgreSQL builds the JSON, psycopg decodes it, json.dumps re-encodes
               (the original Cruddur: query_array_json returned Python objects)
  python       plain rows as dicts, json.dumps in Python

Usage: .venv/bin/python bench/json_passthrough.py [--activities 10000] [--rounds 15]
The database is CRUDDUR_BENCH_URL's (a throwaway one is made beside it), else the
embedded server's; the database cruddur_bench is dropped and recreated.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from psycopg.rows import dict_row
from stage import bench_database, drop_database, fresh_database

from cruddur.db import Db
from cruddur.db.pool import wrap_array
from cruddur.ops import fake, loading

FEED = (Path(__file__).parent / "feed_page.sql").read_text()


def prepare(url: str, activities: int) -> None:
    fresh_database(url, loading.SCHEMA, loading.SEED)
    with Db(url) as db:
        fake.load(db, fake.FakeData(users=max(1, activities // 100), activities=activities, seed=4))


def methods(db: Db, limit: int) -> dict[str, Callable[[], str]]:
    params = {"limit": limit}
    decoded_sql = wrap_array(FEED).replace("::text FROM", " FROM", 1)

    def passthrough() -> str:
        return db.query_array_json(FEED, params)

    def decode() -> str:
        return json.dumps(db.query_value(decoded_sql, params))

    def python() -> str:
        with db.connection() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(FEED, params).fetchall()
        return json.dumps(rows, default=str)

    return {"passthrough": passthrough, "decode": decode, "python": python}


def measure(db: Db, limit: int, rounds: int, calls: int) -> dict[str, tuple[float, float]]:
    """Median wall-clock and client-CPU µs per page, for each method."""
    candidates = methods(db, limit)
    wall: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for name, run in candidates.items():  # warm up, and check they agree
        assert len(json.loads(run())) == limit, name
    for _ in range(rounds):
        order = list(candidates.items())
        random.shuffle(order)
        for name, run in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                run()
            wall[name].append((time.perf_counter() - start) / calls * 1e6)
            cpu[name].append((time.process_time() - start_cpu) / calls * 1e6)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    url = bench_database("cruddur_bench")
    try:
        prepare(url, args.activities)
        print(f"{args.activities} activities; median µs per page over {args.rounds} rounds")
        print("page  measure        passthrough  decode  python  decode/pass  python/pass")
        with Db(url) as db:
            for limit in (20, 100):
                m = measure(db, limit, args.rounds, args.calls)
                for index, label in enumerate(("wall clock", "client CPU")):
                    p, d, y = (m[name][index] for name in ("passthrough", "decode", "python"))
                    print(
                        f"{limit:>4}  {label:<12} {p:>12.0f} {d:>7.0f} {y:>7.0f}"
                        f" {d / p:>12.2f} {y / p:>12.2f}"
                    )
    finally:  # a failed run left it behind
        drop_database(url)


if __name__ == "__main__":
    main()
