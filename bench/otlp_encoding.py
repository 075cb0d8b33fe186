"""CPU time to encode one batch of real spans: the SDK's OTLP encoder against
telemetry/otlp.py's SpanEncoder, in one process, interleaved, best of the rounds.

The spans are those of sampled home-feed requests (server, use case, SQL statement)
made by calling the WSGI app directly, as bench/telemetry_instructions.py does; both
encodings are checked to be the same bytes first.

Usage: .venv/bin/python bench/otlp_encoding.py [--size 1000] [--spans 512] [--rounds 15]
Needs the database bench/feed.py built: cruddur_bench_feed_<size>.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from stage import traced_feed_environment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from otlp_receiver import OtlpReceiver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--spans", type=int, default=512, help="the SDK's batch size")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    sink = OtlpReceiver(decode=False)
    traced_feed_environment(
        args.size, sink.url, CRUDDUR_LOG_LEVEL="warning", OTEL_TRACES_SAMPLER="always_on"
    )
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from werkzeug.test import EnvironBuilder

    from cruddur.api import create_worker_app
    from cruddur.telemetry import tracing
    from cruddur.telemetry.otlp import SpanEncoder

    app = create_worker_app()
    memory = InMemorySpanExporter()
    tracing._provider.add_span_processor(SimpleSpanProcessor(memory))
    environ = EnvironBuilder("/api/activities/home").get_environ()
    while len(memory.get_finished_spans()) < args.spans:
        body = app(dict(environ), lambda status, headers, exc_info=None: None)
        b"".join(body)
        getattr(body, "close", lambda: None)()
    spans = memory.get_finished_spans()[: args.spans]
    encoder = SpanEncoder()
    assert encoder.encode(spans) == encode_spans(spans).SerializePartialToString()
    ways = {
        "SDK encoder": lambda: encode_spans(spans).SerializePartialToString(),
        "SpanEncoder": lambda: encoder.encode(spans),
    }
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(args.rounds):
        for name, encode in ways.items():
            started = time.thread_time()
            encode()
            best[name] = min(best[name], time.thread_time() - started)
    sdk = best["SDK encoder"]
    print(f"{len(spans)} spans of feed requests; CPU µs a span, best of {args.rounds} rounds")
    for name, seconds in best.items():
        print(f"{name}: {seconds / len(spans) * 1e6:.1f} µs a span ({seconds / sdk:.0%})")
    tracing.stop()
    sink.close()


if __name__ == "__main__":
    main()
