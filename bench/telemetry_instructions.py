"""Instructions a home-feed request costs in one process, for each telemetry setting:
load-independent figures (valgrind's callgrind) beside bench/feed.py --observability.

Each setting runs in a process of its own under callgrind, calling the WSGI app directly
(feed cache off, request log lines to /dev/null, traces to a local OTLP/HTTP receiver):
once with --calls few and once with --calls many requests after the same warm-up; the
difference over the extra requests is one request's instructions, the exporter's thread
included. Traces at 10% are worked out as 0.9 x unsampled + 0.1 x sampled, and measured:
every 10th request carries a sampled caller's traceparent (parent-based sampling, no
other request sampled), so a tenth is traced in a fixed order. Both runs
send their spans before they end, and once after the warm-up (the first export's imports
and connection are then in neither count); batches go out by size (512 spans) or at
those flushes, not every 5 s, which under callgrind's slowness would be every few
requests (and made the counts vary by hundreds of thousands from run to run).

Usage: .venv/bin/python bench/telemetry_instructions.py [--size 1000] [--calls 300]
Needs valgrind and the database bench/feed.py built: cruddur_bench_feed_<size>.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from stage import callgrind_instructions, per_call, server_url

from cruddur.urls import with_database

# The tests' OTLP receiver, here decoding nothing.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from otlp_receiver import OtlpReceiver

WARM = 20
SETTINGS = {
    "nothing observed": {"CRUDDUR_LOG_LEVEL": "warning"},
    "off (request log)": {},
    "metrics": {"CRUDDUR_METRICS_PORT": "9"},  # the folder below: no port is opened
    "traces, unsampled": {"OTEL_TRACES_SAMPLER_ARG": "0"},
    "traces, sampled": {"OTEL_TRACES_SAMPLER_ARG": "1"},
    "traces at 10%, every 10th request (measured)": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
        "CRUDDUR_BENCH_SAMPLE_EVERY": "10",
    },
}
# A sampled caller's traceparent, its trace id the request's number.
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d{:08x}-00f067aa0ba902b7-01"


def serve(calls: int) -> None:
    """In the measured process: the app, WARM requests, then `calls` more."""
    from werkzeug.test import EnvironBuilder

    from cruddur.api import create_worker_app
    from cruddur.telemetry import tracing

    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the JSON lines go to fd 1
    app = create_worker_app()
    environ = EnvironBuilder("/api/activities/home").get_environ()
    every = int(os.environ.get("CRUDDUR_BENCH_SAMPLE_EVERY", "0"))
    for n in range(WARM + calls):
        request = dict(environ)
        if every and n % every == 0:
            request["HTTP_TRACEPARENT"] = TRACEPARENT.format(n)
        statuses: list[str] = []
        body = app(
            request, lambda status, headers, exc_info=None, seen=statuses: seen.append(status)
        )
        b"".join(body)
        getattr(body, "close", lambda: None)()
        if n == 0 and not statuses[0].startswith("200"):
            # No such database: its 503s were counted as the feed's instructions.
            raise SystemExit(f"the feed answered {statuses[0]}: run `bench/feed.py` first")
        if n == WARM - 1:
            tracing.force_flush()  # the first export's imports and connection, in both runs
    tracing.force_flush()  # these requests' spans, sent within the run


def instructions(env: dict[str, str], calls: int) -> int:
    # prometheus_client's multiprocess files (the metrics setting) go to the run's folder.
    return callgrind_instructions(
        [__file__, "--serve", str(calls)], env, folder_setting="PROMETHEUS_MULTIPROC_DIR"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument(
        "--calls",
        type=int,
        default=300,
        help="extra requests measured (a multiple of 10: the measured 10%% row traces every 10th)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    if args.calls % 10:
        parser.error("--calls must be a multiple of 10 (the measured 10% row)")
    sink = OtlpReceiver(decode=False)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CRUDDUR_METR"))}
    base.update(
        CONNECTION_URL=with_database(server_url(), f"cruddur_bench_feed_{args.size}"),
        CRUDDUR_FEED_CACHE="0", CRUDDUR_POOL_MAX_SIZE="1", PYTHONHASHSEED="0",
    )  # fmt: skip
    envs = {}
    for name, extra in SETTINGS.items():
        env = {**base, **extra}
        if name.startswith("traces"):
            env.setdefault("OTEL_TRACES_SAMPLER", "traceidratio")
            env.update(OTEL_EXPORTER_OTLP_ENDPOINT=sink.url)
            # Batches by size, not by the clock: under callgrind a request takes ~50 times
            # longer, and the 5 s timer would send a batch every few requests where under
            # load a batch fills to 512 spans first (force_flush sends the rest).
            env.update(OTEL_BSP_SCHEDULE_DELAY="3600000")
        envs[name] = env
    per_request = per_call(lambda name, calls: instructions(envs[name], calls), envs, args.calls)
    sink.close()
    per_request["traces at 10% (0.9 unsampled + 0.1 sampled)"] = (
        0.9 * per_request["traces, unsampled"] + 0.1 * per_request["traces, sampled"]
    )
    nothing = per_request["nothing observed"]
    print(f"{args.size:,} activities; {args.calls} requests after {WARM}; callgrind")
    print("| setting | instructions a request | more than nothing observed |")
    print("|---|---:|---:|")
    for name, count in per_request.items():
        print(f"| {name} | {count / 1000:,.0f}k | {count / nothing - 1:+.1%} |")


if __name__ == "__main__":
    main()
