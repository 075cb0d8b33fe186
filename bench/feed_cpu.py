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

from feed import server_url

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
    devnull = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    for handler in logging.getLogger().handlers:  # the lines are made and written, unseen
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    request_log = logging.getLogger("cruddur.request")
    environ = EnvironBuilder("/api/activities/home").get_environ()

    def call(app) -> None:
        body = app(dict(environ), lambda status, headers, exc_info=None: None)
        b"".join(body)
        getattr(body, "close", lambda: None)()

    def api_quiet(env, start):
        request_log.disabled = True
        try:
            return api(env, start)
        finally:
            request_log.disabled = False

    apps = {"API, request log on": api, "API, request log off": api_quiet, "floor": bare_feed.app}
    for app in apps.values():
        for _ in range(200):
            call(app)
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(args.rounds):
        for name, app in apps.items():
            started = time.process_time()
            for _ in range(args.calls):
                call(app)
            cpu[name].append((time.process_time() - started) / args.calls * 1e6)
    print(f"{args.size:,} activities; {args.rounds} interleaved rounds of {args.calls} calls")
    print("| app | CPU µs a request, each round | median |")
    print("|---|---|---:|")
    for name, values in cpu.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {rounds} | {statistics.median(values):.0f} |")


if __name__ == "__main__":
    main()
