"""OpenTelemetry traces over OTLP/HTTP, configured by the standard OTEL_* variables.

`start()` runs in each process that serves or works (after a server's fork or spawn: a
batch processor's thread does not survive a fork). It installs the SDK's tracer provider
with a batch processor and the OTLP/HTTP exporter, which read OTEL_EXPORTER_OTLP_ENDPOINT
(a base URL; `/v1/traces` is added), OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME,
OTEL_TRACES_SAMPLER and _ARG, OTEL_BSP_* themselves. The psycopg instrumentation is
installed before any pool opens, so pooled connections make a span per statement. No
sqlcommenter: a comment per request in the SQL text defeats prepared statements.

Nothing of the SDK is imported while tracing is off.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import threading
from typing import Any

DEFAULT_SERVICE_NAME = "backend-flask"  # the original's OTEL_SERVICE_NAME
STOP_FLUSH_SECONDS = 5.0  # what a stopping process waits for its last spans to go out

log = logging.getLogger("cruddur.telemetry")

_provider: Any = None  # the SDK's TracerProvider once started
tracer: Any = None  # Cruddur's own tracer (use-case spans); None while tracing is off


def enabled() -> bool:
    return tracer is not None


def _resource() -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def start() -> None:
    """The SDK and psycopg's instrumentation, for this process; flushed when it ends."""
    global _provider, tracer
    if _provider is not None:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The sampler comes from OTEL_TRACES_SAMPLER / _ARG (default: parent-based, always on).
    provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    _provider = provider
    tracer = provider.get_tracer("cruddur")
    # A worker that multiprocessing forked ends with os._exit, skipping atexit; its
    # finalizers run on both paths (and in a plain process, at exit).
    multiprocessing.util.Finalize(None, stop, exitpriority=100)
    service = provider.resource.attributes.get("service.name")
    log.info("traces: on, service %s, OTLP/HTTP", service)


def stop(timeout: float = STOP_FLUSH_SECONDS) -> None:
    """Send what is queued and stop, waiting `timeout` seconds at most: with a receiver
    that is slow or gone, the SDK's own shutdown could hold a stopping worker for 30 s or
    more (ECS kills a task 30 s after asking it to stop)."""
    global _provider, tracer
    if _provider is None:
        return
    provider, _provider, tracer = _provider, None, None
    flushing = threading.Thread(target=provider.shutdown, name="cruddur-trace-flush", daemon=True)
    flushing.start()
    flushing.join(timeout)


def force_flush(timeout_millis: int = 5000) -> None:
    """Send the queued spans now (the Lambda, before its environment is frozen)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


def instrument_app(app: Any) -> None:
    """A server span per request (continuing an incoming traceparent), named by route."""
    from flask import request
    from opentelemetry import trace
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor().instrument_app(app, tracer_provider=_provider)

    @app.before_request
    def _remember_ids() -> None:
        # The request's log line is written at the WSGI edge, after the span has ended.
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            request.environ[TRACE_IDS_KEY] = (
                format(context.trace_id, "032x"),
                format(context.span_id, "016x"),
            )


TRACE_IDS_KEY = "cruddur.trace_ids"  # in the WSGI environ: (trace id, span id) in hex


def current_ids() -> dict[str, str]:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }
