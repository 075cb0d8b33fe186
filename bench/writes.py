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
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from feed import Load, build, pgbench_binary, server_url, start_service, timed, wrk

from cruddur.db import Db, template
from cruddur.urls import with_database, without_password

VENV_BIN = Path(sys.executable).parent
MESSAGE = "A crud from the write benchmark, about as long as most."


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_for(name: str, values: dict[str, str]) -> str:
    """The SQL file with its placeholders replaced by literals, on one line (for pgbench)."""
    sql = template("activities", name)
    for key, value in values.items():
        sql = sql.replace(f"%({key})s", value)
    return " ".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def pgbench(url: str, sql: str, connections: int, duration: int, mode: str) -> Load:
    conninfo, password = without_password(url)
    env = {**os.environ, "PGPASSWORD": password or ""}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder, "write.sql")
        script.write_text(sql + "\n")
        command = [
            pgbench_binary(), "-n", "-M", mode, "-f", str(script), "-c", str(connections),
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
    tps = float(out.split("tps = ")[1].split()[0])
    cuts = statistics.quantiles(latencies, n=100)
    return Load(tps, cuts[49], cuts[98], cpu / max(len(latencies), 1) * 1e6)


def wrk_post(url: str, body: str, token: str, connections: int, duration: int) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {body!r}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        )
    try:
        return wrk(url, connections, duration, script=script.name)
    finally:
        os.unlink(script.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activities", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians kept")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    url = with_database(server_url(), "cruddur_bench_writes")
    print(f"{args.activities:,} activities:")
    build(url, args.activities, args.users)
    with Db(url) as db:
        author = db.query_value("SELECT uuid FROM users WHERE handle = 'andrewbrown'")
        parent = db.query_value(
            "SELECT uuid FROM activities WHERE reply_to_activity_uuid IS NULL"
            " AND expires_at > now() + interval '1 day' ORDER BY created_at DESC LIMIT 1"
        )
    env = {**os.environ, "CONNECTION_URL": url}
    token = subprocess.run(
        [VENV_BIN / "cruddur", "dev", "token", "--handle", "andrewbrown", "--expires-in", "3600"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    values = {"user_uuid": _literal(str(author)), "message": _literal(MESSAGE)}
    sql = {
        "create": sql_for("create", {**values, "ttl": "'1 day'"}),
        "reply": sql_for("reply", {**values, "parent_uuid": _literal(str(parent))}),
    }
    process, base = start_service(url, "granian", args.workers, args.threads)
    http = {
        "create": (f"{base}/api/activities", f'{{"message": "{MESSAGE}", "ttl": "1-day"}}'),
        "reply": (f"{base}/api/activities/{parent}/reply", f'{{"message": "{MESSAGE}"}}'),
    }
    loads: dict[tuple[str, str], list[Load]] = {}
    try:
        for round_number in range(1, args.rounds + 1):
            for write in ("create", "reply"):
                for mode in ("prepared", "simple"):
                    loads.setdefault((write, f"pgbench -M {mode}"), []).append(
                        pgbench(url, sql[write], args.connections, args.duration, mode)
                    )
                target, body = http[write]
                loads.setdefault((write, "HTTP, granian"), []).append(
                    wrk_post(target, body, token, args.connections, args.duration)
                )
            print(f"  round {round_number}: " + ", ".join(
                f"{write} {name} {runs[-1].rps:,.0f}/s" for (write, name), runs in loads.items()
            ))  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=20)
    print()
    print(
        f"{args.connections} connections; granian {args.workers} workers x {args.threads} "
        f"threads; median of {args.rounds} interleaved rounds of {args.duration} s; latency in ms"
    )
    print("| write | load | req/s | p50 | p99 | CPU µs/req | of prepared pgbench's req/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (write, name), runs in loads.items():
        base_runs = loads[(write, "pgbench -M prepared")]
        share = statistics.median(r.rps / b.rps for r, b in zip(runs, base_runs, strict=True))
        print(
            f"| {write} | {name} | {statistics.median(r.rps for r in runs):,.0f} "
            f"| {statistics.median(r.p50_ms for r in runs):.2f} "
            f"| {statistics.median(r.p99_ms for r in runs):.2f} "
            f"| {statistics.median(r.cpu_us for r in runs):,.0f} | {share:.0%} |"
        )


if __name__ == "__main__":
    main()
