"""Writes under load: over HTTP (wrk → cruddur serve) against pgbench on the same SQL.

In one run, on one database (the schema, the seed and `cruddur db seed --fake`):
  - create: POST /api/activities with a dev token, against pgbench running
    db/sql/activities/create.sql with the same values;
  - reply: POST /api/activities/<one parent>/reply, every request to the same crud,
    against pgbench running db/sql/activities/reply.sql on that parent;
round after round, interleaved, pgbench in prepared mode (as psycopg runs a statement
it has seen 5 times) and, for reference, in its simple protocol. The share is the median
of each round's HTTP/pgbench ratio (both sides of one ratio ran seconds apart).
Everything shares the machine's cores: compare ratios, not absolute figures.

Usage: .venv/bin/python bench/writes.py [--duration 4] [--rounds 5] [--connections 16]
       [--workers 2] [--threads 4] [--activities 100000]
Needs wrk and pgbench, like bench/feed.py.
"""

from __future__ import annotations

import argparse
import atexit
import os
import subprocess
import tempfile

import loads
from stage import CRUDDUR, bench_database, build, drop_database, start_service, stop

from cruddur.db import Db

MESSAGE = "A crud from the write benchmark, about as long as most."


def wrk_post(url: str, body: str, token: str, connections: int, duration: int) -> loads.Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {body!r}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        )
    try:
        return loads.wrk(url, connections, duration, script=script.name)
    finally:
        os.unlink(script.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activities", type=int, default=100_000)
    loads.load_options(
        parser, rounds=5, duration=4, connections=16, workers=2, threads=4, users=1000
    )
    args = parser.parse_args()
    loads.require_wrk()
    url = bench_database("cruddur_bench_writes")
    atexit.register(drop_database, url)  # left behind, it was nobody's to reuse
    print(f"{args.activities:,} activities:")
    build(url, args.activities, args.users)
    with Db(url) as db:
        author, subject = db.query_row(
            "SELECT uuid, cognito_user_id FROM users WHERE handle = 'andrewbrown'"
        )
        parent = db.query_value(
            "SELECT uuid FROM activities WHERE reply_to_activity_uuid IS NULL"
            " AND expires_at > now() + interval '1 day' ORDER BY created_at DESC LIMIT 1"
        )
    env = {**os.environ, "CONNECTION_URL": url}
    token = subprocess.run(
        [CRUDDUR, "dev", "token", "--handle", "andrewbrown", "--expires-in", "3600"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    values = {
        "user_uuid": loads.literal(str(author)),
        "cognito_user_id": loads.literal(subject),  # the write checks it (writer.sql)
        "message": loads.literal(MESSAGE),
    }
    sql = {
        "create": loads.sql_for("activities/create", {**values, "ttl": "'1 day'"}),
        "reply": loads.sql_for(
            "activities/reply", {**values, "parent_uuid": loads.literal(str(parent))}
        ),
    }
    process, base = start_service(url, "granian", args.workers, args.threads)
    http = {
        "create": (f"{base}/api/activities", f'{{"message": "{MESSAGE}", "ttl": "1-day"}}'),
        "reply": (f"{base}/api/activities/{parent}/reply", f'{{"message": "{MESSAGE}"}}'),
    }
    measured: dict[tuple[str, str], list[loads.Load]] = {}
    try:
        for round_number in range(1, args.rounds + 1):
            for write in ("create", "reply"):
                for mode in ("prepared", "simple"):
                    measured.setdefault((write, f"pgbench -M {mode}"), []).append(
                        loads.pgbench(url, sql[write], args.connections, args.duration, mode)
                    )
                target, body = http[write]
                measured.setdefault((write, "HTTP, granian"), []).append(
                    wrk_post(target, body, token, args.connections, args.duration)
                )
            print(f"  round {round_number}: " + ", ".join(
                f"{write} {name} {runs[-1].rps:,.0f}/s" for (write, name), runs in measured.items()
            ))  # fmt: skip
    finally:
        stop(process)
    print()
    print(
        f"{args.connections} connections; granian {args.workers} workers x {args.threads} "
        f"threads; median of {args.rounds} interleaved rounds of {args.duration} s; latency in ms"
    )
    rows = []
    for (write, name), runs in measured.items():
        load = loads.median_load(runs, measured[(write, "pgbench -M prepared")])
        rows.append([
            write, name, f"{load.rps:,.0f}", f"{load.p50_ms:.2f}", f"{load.p99_ms:.2f}",
            f"{load.cpu_us:,.0f}", f"{load.share:.0%}",
        ])  # fmt: skip
    loads.print_table(
        ["write", "load", "req/s", "p50", "p99", "CPU µs/req", "of prepared pgbench's req/s"],
        "llrrrrr",
        rows,
    )


if __name__ == "__main__":
    main()
