"""Database outages under write load: the whole matrix the test suite samples.

One PostgreSQL cluster of its own (the project's embedded-server code, in a temporary
folder, on a free port), `cruddur serve` on it (2 workers of 4 threads), 4 clients
posting cruds and 1 reading (health and home feed, alternately), each request on a new
connection, 50 ms apart, throughout. Then, for each outage length (3, 10, 60 s) and
each `pg_ctl stop` mode (fast: a clean shutdown; immediate: a crash, as in a failover),
interleaved: stop, wait, start, and what the clients saw:
- requests while down: started between the stop and the first direct connection that
  succeeds after the start; the slowest of them, and how many were not a prompt 503 with
  Retry-After (promised: within 1 s);
- the slowest request of the whole run (promised: 5 s at most);
- the first success after the database accepts connections again (promised: 1 s), and
  requests that still failed later than that;
- writes: acknowledged (201), of those missing or stored twice, and failed writes that
  were stored anyway (once at most is allowed: the commit may have happened).

Usage: .venv/bin/python bench/outage.py [--lengths 3,10,60] [--modes fast,immediate]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from outage_support import (
    ANSWER_WHILE_DOWN,
    BACK_WITHIN,
    LONGEST_WAIT,
    Cluster,
    Load,
    Outage,
    dev_token,
    run_outage,
)
from server_support import Served


def row(outage: Outage) -> str:
    first = outage.first_ok_after_back
    acked = sum(c.status == 201 for c in outage.writes)
    stored_failed = sum(outage.counts.get(c.message, 0) for c in outage.failed_writes)
    return (
        f"| {outage.seconds:g} s | {outage.mode} | {len(outage.during)} "
        f"| {outage.slowest_while_down:.3f} | {len(outage.wrong_while_down)} "
        f"| {outage.slowest:.3f} | {'never' if first is None else f'{first:.3f}'} "
        f"| {len(outage.failed_after_recovery)} | {acked} | {len(outage.lost)} "
        f"| {len(outage.doubled)} | {len(outage.failed_writes)} | {stored_failed} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="3,10,60", help="outage lengths, seconds")
    parser.add_argument("--modes", default="fast,immediate", help="pg_ctl stop modes")
    args = parser.parse_args()
    lengths = [float(n) for n in args.lengths.split(",")]
    modes = args.modes.split(",")
    runs = []
    for n, length in enumerate(lengths):  # each length in both modes, the order turning
        runs += [(m, length) for m in (modes if n % 2 == 0 else list(reversed(modes)))]
    print(f"load average {os.getloadavg()[0]:.1f} at the start")
    outages: list[Outage] = []
    with tempfile.TemporaryDirectory(prefix="cruddur-outage-") as scratch:
        cluster = Cluster(Path(scratch) / "db")
        url = cluster.create()
        home = Path(scratch) / "home"
        served = Served(
            "--workers", "2", "--threads", "4",
            env={"CONNECTION_URL": url, "CRUDDUR_HOME": str(home)},
        )  # fmt: skip
        try:
            served.wait_healthy()
            with Load(served.port, dev_token(home)) as load:
                for mode, length in runs:
                    outage = run_outage(cluster, url, load, mode, length)
                    outages.append(outage)
                    print(f"  {outage.summary()}", flush=True)
        finally:
            served.stop()
            cluster.remove()
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print(
        "| outage | stop mode | requests while down | slowest while down, s "
        f"| not a 503 within {ANSWER_WHILE_DOWN:g} s | slowest of the run, s "
        "| first success after the database is back, s "
        f"| failures later than {BACK_WITHIN:g} s after | writes acknowledged | lost "
        "| doubled | writes failed | failed but stored |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for outage in sorted(outages, key=lambda o: (o.seconds, o.mode)):
        print(row(outage))
    met = all(
        not o.wrong_while_down
        and o.slowest <= LONGEST_WAIT
        and not o.too_slow
        and o.first_ok_after_back is not None
        and o.first_ok_after_back <= BACK_WITHIN
        and not o.failed_after_recovery
        and not o.lost
        and not o.doubled
        for o in outages
    )
    print(f"\nevery promise kept in every run: {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()
