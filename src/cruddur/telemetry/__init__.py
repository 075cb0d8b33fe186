"""What Cruddur does, seen from outside: traces, request logs and metrics.

Set up once per process, at the edges, from `TelemetrySettings` (config.py):
- `logs`: the root logger writes one JSON object a line on stdout (or text for people);
- `tracing`: OpenTelemetry, on only when an OTLP endpoint is set (the SDK, the Flask and
  psycopg instrumentations are imported only then);
- `metrics`: Prometheus counters in each worker, summed over the workers by a small
  exporter process (`exporter`) that `cruddur serve` starts beside the server;
- `requests`: one call per finished request that feeds the log line and the metrics;
- `spans`: the use-case spans of `services/`, free when tracing is off.
Nothing here is called from the use cases' logic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cruddur.config import TelemetrySettings


def start_process(settings: TelemetrySettings, *, dev: bool = False, server: bool = False) -> None:
    """Logging, tracing and metrics for this process: a server worker after its fork (or
    spawn), the Lambda's runtime, a CLI command. Safe to call more than once.

    server: this process serves the API, whose requests are sampled at its edge."""
    # Imported here, not with the package: the CLI's `db` verbs import a submodule of it
    # (commands), and loading metrics (multiprocessing) cost each of them ~10 ms.
    from cruddur.telemetry import logs, metrics, tracing

    logs.configure(settings, dev=dev, queued=server and not dev)
    if settings.traces:
        tracing.start(settings, gated=server)
    if settings.metrics:
        metrics.start()
