"""Prometheus metrics, counted in each worker and summed over the workers.

With CRUDDUR_METRICS_PORT set, `cruddur serve` makes an empty folder for
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR) and starts `exporter`
beside the server; each worker writes its counts to memory-mapped files there, and the
exporter adds them up on each scrape. prometheus_client is imported only when metrics are
on (it picks its storage from PROMETHEUS_MULTIPROC_DIR at import).
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cruddur.telemetry")

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
POOL_EVERY = 1.0  # seconds between readings of the pool's gauges
# Latency buckets in seconds: a feed page takes 2-5 ms here, a write a little more.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_metrics: Any = None  # the _Metrics below, once started in this process


def enabled() -> bool:
    return _metrics is not None


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "cruddur_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
        )
        self.latency = Histogram(
            "cruddur_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by route template",
            ["route"],
            buckets=BUCKETS,
        )
        self.db_errors = Counter(
            "cruddur_db_errors",
            "Database errors met by requests, by SQLSTATE class "
            "(08: connection; none: no SQLSTATE, e.g. a pool timeout)",
            ["sqlstate_class"],
        )
        self.tokens_refused = Counter(
            "cruddur_auth_tokens_refused", "Sign-ins refused (401 or 403), by reason", ["reason"]
        )
        # Summed over the live workers: connections open, idle ones, requests waiting.
        self.pool_size = Gauge(
            "cruddur_db_pool_size", "Connections the pools hold", multiprocess_mode="livesum"
        )
        self.pool_idle = Gauge(
            "cruddur_db_pool_idle", "Connections idle in the pools", multiprocess_mode="livesum"
        )
        self.pool_waiting = Gauge(
            "cruddur_db_pool_waiting",
            "Requests waiting for a connection",
            multiprocess_mode="livesum",
        )


def start() -> None:
    """The metrics of this process. Without the multiprocess folder (a server started by
    hand, not by `cruddur serve`) this process serves its own counts on the port."""
    global _metrics
    if _metrics is not None:
        return
    folder = os.environ.get(MULTIPROC_DIR)
    _metrics = _Metrics()
    if folder:
        from prometheus_client import multiprocess

        pid = os.getpid()
        # Gauges of a worker that is gone must not count: drop its files when it ends.
        multiprocessing.util.Finalize(
            None, lambda: multiprocess.mark_process_dead(pid, folder), exitpriority=90
        )
        return
    from prometheus_client import start_http_server

    from cruddur.config import Settings

    settings = Settings.from_env().telemetry
    try:
        start_http_server(settings.metrics_port, settings.metrics_host)
    except OSError as exc:
        log.warning("metrics: cannot listen on port %s: %s", settings.metrics_port, exc)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    _metrics.requests.labels(route, method, str(status)).inc()
    _metrics.latency.labels(route).observe(seconds)


def count_db_error(exc: BaseException) -> None:
    if _metrics is None:
        return
    sqlstate = getattr(exc, "sqlstate", None)
    _metrics.db_errors.labels(sqlstate[:2] if sqlstate else "none").inc()


def count_refused_token(reason: str) -> None:
    if _metrics is not None:
        _metrics.tokens_refused.labels(reason).inc()


def watch_pool(stats: Callable[[], dict[str, int] | None]) -> None:
    """Read the pool's figures every POOL_EVERY seconds into the gauges (a daemon thread:
    a reading per request would cost every request)."""
    if _metrics is None:
        return

    def loop() -> None:
        while True:
            try:
                figures = stats() or {}
                _metrics.pool_size.set(figures.get("pool_size", 0))
                _metrics.pool_idle.set(figures.get("pool_available", 0))
                _metrics.pool_waiting.set(figures.get("requests_waiting", 0))
            except Exception:  # a pool closing under us: read again next time
                log.debug("metrics: pool reading failed", exc_info=True)
            time.sleep(POOL_EVERY)

    threading.Thread(target=loop, name="cruddur-pool-metrics", daemon=True).start()
