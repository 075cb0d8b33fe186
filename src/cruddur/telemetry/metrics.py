"""Prometheus metrics, counted in each worker and summed over the workers.

With CRUDDUR_METRICS_PORT set, `cruddur serve` makes an empty folder for
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR) and starts `exporter`
beside the server; each worker writes its counts to memory-mapped files there, and the
exporter adds them up on each scrape. prometheus_client is imported only when metrics are
on (it picks its storage from PROMETHEUS_MULTIPROC_DIR at import).
"""

from __future__ import annotations

import bisect
import logging
import multiprocessing.util
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cruddur.telemetry.counts_folder import MULTIPROC_DIR
from cruddur.telemetry.logs import Finished

log = logging.getLogger("cruddur.telemetry")

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
        # Summed over the live workers, by pool (primary, reader): connections open, idle
        # ones, requests waiting. livesum adds up each pool's series over the workers.
        self.pool_size = Gauge(
            "cruddur_db_pool_size",
            "Connections the pools hold, by pool",
            ["pool"],
            multiprocess_mode="livesum",
        )
        self.pool_idle = Gauge(
            "cruddur_db_pool_idle",
            "Connections idle in the pools, by pool",
            ["pool"],
            multiprocess_mode="livesum",
        )
        self.pool_waiting = Gauge(
            "cruddur_db_pool_waiting",
            "Requests waiting for a connection, by pool",
            ["pool"],
            multiprocess_mode="livesum",
        )
        # Children by labels, so a request's counts skip labels()' checks and lock.
        self._requests: dict[tuple[str, str, str], Any] = {}
        self._latencies: dict[str, Any] = {}

    def requests_child(self, key: tuple[str, str, str]) -> Any:
        if (child := self._requests.get(key)) is None:
            child = self._requests[key] = self.requests.labels(*key)
        return child

    def latency_child(self, route: str) -> Any:
        if (child := self._latencies.get(route)) is None:
            child = self._latencies[route] = self.latency.labels(route)
        return child


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


# The methods HTTP defines (RFC 9110, and PATCH): each its own label value. Any other a
# client sends counts as OTHER_METHOD, so no client can add series to the metrics.
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
OTHER_METHOD = "other"


def observe_requests(finished: Iterable[Finished]) -> None:
    """Count finished requests and their latencies, added up by labels first: in the
    multiprocess mode each increment is a lock and a write to a memory-mapped file, so a
    batch of requests to one route costs a few writes instead of three per request."""
    counts: dict[tuple[str, str, str], int] = {}
    latencies: dict[str, list[float]] = {}
    for _, method, route, status, seconds, *_ in finished:
        if method not in HTTP_METHODS:  # any text a client sends: one series for them all
            method = OTHER_METHOD
        key = (route, method, status[:3])
        counts[key] = counts.get(key, 0) + 1
        if (values := latencies.get(route)) is None:
            latencies[route] = [seconds]
        else:
            values.append(seconds)
    for key, count in counts.items():
        _metrics.requests_child(key).inc(count)
    for route, values in latencies.items():
        observe_all(_metrics.latency_child(route), values)


def observe_all(histogram: Any, values: list[float]) -> None:
    """histogram.observe(v) for each value, with one increment per bucket hit and one of
    the sum (prometheus_client's per-value observe has no batch form: this reads its
    buckets, bounds and sum, and falls back to observe if they are not there)."""
    try:
        buckets, bounds, total = histogram._buckets, histogram._upper_bounds, histogram._sum
    except AttributeError:
        for value in values:
            histogram.observe(value)
        return
    hits = [0] * len(bounds)
    for value in values:
        hits[bisect.bisect_left(bounds, value)] += 1  # the first bound >= value, as observe
    total.inc(sum(values))
    for bucket, count in zip(buckets, hits, strict=True):
        if count:
            bucket.inc(count)


def count_db_error(exc: BaseException) -> None:
    if _metrics is None:
        return
    _metrics.db_errors.labels(sqlstate_class(exc)).inc()


def sqlstate_class(exc: BaseException) -> str:
    """The error's SQLSTATE class; "08" (connection exception) for a connection that
    failed or was lost, which libpq reports with no SQLSTATE (a refused login, a closed
    port, a server gone, the fast 503s of a known outage: all of them were "none", and
    an alert on 08 never fired); "none" for the pool's own timeout (no free connection)."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2]
    # By name: the Lambdas share this module and do not load psycopg_pool (whose
    # PoolTimeout is an OperationalError too).
    kinds = {kind.__name__ for kind in type(exc).__mro__}
    if "PoolTimeout" in kinds or not kinds & {"OperationalError", "InterfaceError"}:
        return "none"  # the pool's timeout, or the client's own error (a bad parameter)
    return "08"


def count_refused_token(reason: str) -> None:
    if _metrics is not None:
        _metrics.tokens_refused.labels(reason).inc()


def watch_pools(pools: Mapping[str, Callable[[], dict[str, int] | None]]) -> None:
    """Read each pool's figures (by its label: "primary", "reader") every POOL_EVERY
    seconds into the gauges (a daemon thread: a reading per request would cost every
    request). A pool not opened yet reads as 0."""
    if _metrics is None:
        return
    gauges = [
        (
            stats,
            _metrics.pool_size.labels(name),
            _metrics.pool_idle.labels(name),
            _metrics.pool_waiting.labels(name),
        )
        for name, stats in pools.items()
    ]

    def loop() -> None:
        while True:
            for stats, size, idle, waiting in gauges:
                try:
                    figures = stats() or {}
                    size.set(figures.get("pool_size", 0))
                    idle.set(figures.get("pool_available", 0))
                    waiting.set(figures.get("requests_waiting", 0))
                except Exception:  # a pool closing under us: read again next time
                    log.debug("metrics: pool reading failed", exc_info=True)
            time.sleep(POOL_EVERY)

    threading.Thread(target=loop, name="cruddur-pool-metrics", daemon=True).start()
