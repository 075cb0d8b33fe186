"""Python bytecodes a home-feed request runs, by function (inclusive and own), counted
with sys.settrace's opcode events in one process: where a traced request's work goes,
which callgrind's C-level counts cannot say. Deterministic, but C work (regular
expressions, locks, psycopg, protobuf) is not in it.

The WSGI app is called directly as bench/telemetry_instructions.py does; --export also
counts encoding and sending the requests' spans (one batch at the end).

Usage: .venv/bin/python bench/telemetry_bytecodes.py [--ratio 1] [--export] [--match otlp]
Needs the database bench/feed.py built: cruddur_bench_feed_<size>.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from stage import traced_feed_environment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from otlp_receiver import OtlpReceiver

WARM = 30


def _name(code: CodeType) -> str:
    path = code.co_filename.split("site-packages/")[-1].split("/src/")[-1]
    return f"{path}:{code.co_firstlineno}({code.co_name})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--ratio", default="1", help="OTEL_TRACES_SAMPLER_ARG")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--export", action="store_true")
    parser.add_argument("--match", default="", help="list functions whose name has this")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    sink = OtlpReceiver(decode=False)
    traced_feed_environment(
        args.size, sink.url, OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG=args.ratio
    )
    from werkzeug.test import EnvironBuilder

    from cruddur.api import create_worker_app
    from cruddur.telemetry import tracing

    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the JSON lines go to fd 1
    app = create_worker_app()
    environ = EnvironBuilder("/api/activities/home").get_environ()

    def request() -> None:
        body = app(dict(environ), lambda status, headers, exc_info=None: None)
        b"".join(body)
        getattr(body, "close", lambda: None)()

    for _ in range(WARM):
        request()
    tracing.force_flush()
    own: collections.Counter[CodeType] = collections.Counter()
    inclusive: collections.Counter[CodeType] = collections.Counter()

    def count(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            own[frame.f_code] += 1
            seen = set()
            caller: FrameType | None = frame
            while caller is not None:
                if caller.f_code not in seen:
                    seen.add(caller.f_code)
                    inclusive[caller.f_code] += 1
                caller = caller.f_back
        return count

    sys.settrace(count)
    for _ in range(args.requests):
        request()
    if args.export:
        tracing.force_flush()
    sys.settrace(None)
    n = args.requests
    print(f"{sum(own.values()) / n:,.0f} bytecodes a request", file=sys.stderr)
    print("inclusive      own  function", file=sys.stderr)
    listed = [(c, k) for c, k in inclusive.most_common() if args.match in _name(c)]
    for code, k in listed[: args.top]:
        print(f"{k / n:9,.0f} {own[code] / n:8,.0f}  {_name(code)}", file=sys.stderr)
    tracing.stop()
    sink.close()


if __name__ == "__main__":
    main()
