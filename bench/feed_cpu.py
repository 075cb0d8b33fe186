"""CPU a home-feed request costs in one process: the API (cache off, request log on and
off) against the floor (bench/bare_feed.py), calling each WSGI app directly.

Usage: .venv/bin/python bench/feed_cpu.py [--size 1000] [--calls 1000] [--rounds 3]
Needs the database bench/feed.py (or feed_cache.py) built: cruddur_bench_feed_<size>.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

from stage import server_url

from cruddur.urls import with_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["CONNECTION_URL"] = with_database(server_url(), f"cruddur_bench_feed_{args.size}")
    os.environ["CRUDDUR_FEED_CACHE"] = "0"
    os.environ["CRUDDUR_POOL_MAX_SIZE"] = "1"
    import bare_feed
    from werkzeug.test import EnvironBuilder

    from cruddur.api import create_worker_app

    api = create_worker_app()
    # The request line goes to stdout's descriptor itself (telemetry/logs.py), so the
    # quiet app is one whose edge has no observer: no line, no metrics.
    api_quiet = create_worker_app()
    api_quiet.wsgi_app.observe = None
    out = os.fdopen(os.dup(1), "w", buffering=1)  # where this script's table goes
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the lines are made and written, unseen
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - for the process
    environ = EnvironBuilder("/api/activities/home").get_environ()

    def call(app) -> None:
        body = app(dict(environ), lambda status, headers, exc_info=None: None)
        b"".join(body)
        getattr(body, "close", lambda: None)()

    apps = {"API, request log on": api, "API, request log off": api_quiet, "floor": bare_feed.app}
    for name, app in apps.items():
        # An answer that is not the feed (no such database: a 503, a 500) was measured as
        # if it were: made by `bench/feed.py --sizes N` first.
        statuses: list[str] = []
        body = app(
            dict(environ), lambda status, headers, exc_info=None, seen=statuses: seen.append(status)
        )
        b"".join(body)
        getattr(body, "close", lambda: None)()
        if not statuses[0].startswith("200"):
            raise SystemExit(
                f"{name} answered {statuses[0]}, not the feed: make its database with "
                f"`bench/feed.py --sizes {args.size}` first"
            )
        for _ in range(200):
            call(app)
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(args.rounds):
        for name, app in apps.items():
            started = time.process_time()
            for _ in range(args.calls):
                call(app)
            cpu[name].append((time.process_time() - started) / args.calls * 1e6)
    print(
        f"{args.size:,} activities; {args.rounds} interleaved rounds of {args.calls} calls",
        file=out,
    )
    print("| app | CPU µs a request, each round | median |", file=out)
    print("|---|---|---:|", file=out)
    for name, values in cpu.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {rounds} | {statistics.median(values):.0f} |", file=out)


if __name__ == "__main__":
    main()
