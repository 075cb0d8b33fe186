"""Instructions one request costs the worker, load-independently (valgrind's callgrind):
the uncached home feed (request log on, and without its observer), the floor
(bench/bare_feed.py) serving the same page, and POST /api/activities with a dev token.

Each app runs in a process of its own under callgrind and is called directly as a WSGI
app: WARM requests, then --calls more; once with none more. The difference over --calls
is one request's instructions, every thread of the process included (the feed cache's
notifier after a create). Request log lines go to /dev/null.

Usage: .venv/bin/python bench/request_instructions.py [--calls 200] [--only feed,floor,create]
Builds its own database, cruddur_bench_instructions (1,000 activities), on the bench server
(CRUDDUR_BENCH_URL, else the embedded one); --reuse keeps one built before.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys

from stage import CRUDDUR, bench_database, build, callgrind_instructions, per_call

WARM = 30
MESSAGE = "A crud from the write benchmark, about as long as most."
LOADS = ("feed", "feed-quiet", "floor", "create")


def serve(load: str, calls: int) -> None:
    """In the measured process: the app, WARM requests, then `calls` more."""
    from werkzeug.test import EnvironBuilder

    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the JSON lines go to fd 1
    body = b""
    if load == "floor":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bare_feed

        app = bare_feed.app
    else:
        from cruddur.api import create_worker_app

        app = create_worker_app()
        if load == "feed-quiet":
            app.wsgi_app.observe = None  # the edge without the request line
    if load == "create":
        body = f'{{"message": "{MESSAGE}", "ttl": "1-day"}}'.encode()
        environ = EnvironBuilder(
            "/api/activities",
            method="POST",
            data=body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {os.environ['BENCH_TOKEN']}"},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        ).get_environ()
    else:
        environ = EnvironBuilder(
            "/api/activities/home", environ_base={"REMOTE_ADDR": "127.0.0.1"}
        ).get_environ()
    for _ in range(WARM + calls):
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        out = app(env, lambda status, headers, exc_info=None: None)
        b"".join(out)
        getattr(out, "close", lambda: None)()


def instructions(env: dict[str, str], load: str, calls: int) -> int:
    return callgrind_instructions([__file__, "--serve", load, str(calls)], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="extra requests measured")
    parser.add_argument("--only", default=",".join(LOADS))
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve[0], int(args.serve[1]))
        return
    url = bench_database("cruddur_bench_instructions")
    if not args.reuse:
        build(url, 1000, 100)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CRUDDUR_METR"))}
    base.update(CONNECTION_URL=url, CRUDDUR_POOL_MAX_SIZE="1", PYTHONHASHSEED="0")
    token = subprocess.run(
        [CRUDDUR, "dev", "token", "--handle", "andrewbrown", "--expires-in", "3600"],
        env=base, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    loads = [name for name in args.only.split(",") if name]
    envs = {}
    for load in loads:
        env = {**base, "BENCH_TOKEN": token}
        if load != "create":
            env["CRUDDUR_FEED_CACHE"] = "0"
        envs[load] = env
    per_request = per_call(
        lambda load, calls: instructions(envs[load], load, calls), envs, args.calls
    )
    print(f"{args.calls} requests after {WARM}; callgrind; 1,000 activities")
    print("| load | instructions a request |")
    print("|---|---:|")
    for load, count in per_request.items():
        print(f"| {load} | {count / 1000:,.0f}k |")


if __name__ == "__main__":
    main()
