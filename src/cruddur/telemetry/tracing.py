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

import functools
import logging
import multiprocessing.util
import random
import re
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from cruddur.config import TelemetrySettings

DEFAULT_SERVICE_NAME = "backend-flask"  # the original's OTEL_SERVICE_NAME
# What a stopping process waits for its last spans to go out: under granian's 5 s kill
# timeout (serving.WORKERS_KILL_TIMEOUT), so a worker whose receiver is down or slow still
# ends on its own, its metrics' files cleaned up, instead of being killed at 5 s.
STOP_FLUSH_SECONDS = 3.0

log = logging.getLogger("cruddur.telemetry")

_provider: Any = None  # the SDK's TracerProvider once started
tracer: Any = None  # Cruddur's own tracer (use-case spans); None while tracing is off
_instrumentation_enabled: Any = None  # opentelemetry's is_instrumentation_enabled, once started
_sampling: Any = None  # the Sampling of OTEL_TRACES_SAMPLER, once started
# True in a server worker's request that was not sampled (TraceGate): its use-case spans
# are skipped and its SQL takes a plain cursor (db.pool.PooledConnection.unsampled), each
# on one lookup of this variable. (Suppressing instrumentation in OpenTelemetry's context
# instead cost each such request ~180 Python bytecodes: the context's attach, detach and
# lookups, and the psycopg instrumentation's wrapper and check on every statement.)
_unsampled: ContextVar[bool] = ContextVar("cruddur_unsampled", default=False)
_pooled_connections: Any = None  # db.pool.PooledConnection, told of _unsampled in a worker


def enabled() -> bool:
    return tracer is not None


def service_resource(default_name: str = DEFAULT_SERVICE_NAME) -> Any:
    """The SDK's resource from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, named
    `default_name` when they name no service (a blank name, "  ", was taken as one)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()
    named = str(resource.attributes.get(SERVICE_NAME, "")).strip()
    if not named or named.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_name}))
    return resource


def start(settings: TelemetrySettings, *, gated: bool = False) -> None:
    """The SDK and psycopg's instrumentation, for this process; flushed when it ends.

    gated: a server worker, whose requests `TraceGate` samples (OTEL_TRACES_SAMPLER's
    rule, applied before any instrumentation runs); the SDK then records what it is
    given. Elsewhere (CLI, Lambda) the SDK samples by OTEL_TRACES_SAMPLER itself.
    """
    global _provider, tracer, _instrumentation_enabled, _sampling, _pooled_connections
    if _provider is not None:
        return
    from opentelemetry import trace
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled
    from opentelemetry.sdk.trace import TracerProvider

    from cruddur.telemetry.otlp import CompactSpanExporter
    from cruddur.telemetry.scrub import ScrubbingBatchSpanProcessor

    # The sampler of the settings as checked (the SDK would read OTEL_TRACES_SAMPLER
    # again, as it is: "always_off " with a space was unknown to it, and it sampled all).
    sampler = _requests_only() if gated else sdk_sampler(settings.sampler, settings.sampler_ratio)
    provider = TracerProvider(resource=service_resource(), sampler=sampler, shutdown_on_exit=False)
    # One processor: scrubs an error span, then queues it for the exporter's thread.
    provider.add_span_processor(ScrubbingBatchSpanProcessor(CompactSpanExporter()))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    if gated:
        from cruddur.db.pool import PooledConnection

        PooledConnection.unsampled = _unsampled.get
        _pooled_connections = PooledConnection
    _provider = provider
    _instrumentation_enabled = is_instrumentation_enabled
    _without_propagators_a_context()
    _sampling = Sampling(
        settings.sampler, settings.sampler_ratio, follows_traceparent=_reads_traceparent()
    )
    tracer = provider.get_tracer("cruddur")
    # A worker that multiprocessing forked ends with os._exit, skipping atexit; its
    # finalizers run on both paths (and in a plain process, at exit).
    multiprocessing.util.Finalize(None, stop, exitpriority=100)
    service = provider.resource.attributes.get("service.name")
    log.info("traces: on, service %s, OTLP/HTTP, sampler %s", service, settings.sampler)


def sdk_sampler(sampler: str, ratio: float) -> Any:
    """OTEL_TRACES_SAMPLER and its ratio as config.traces_sampler reads them, as the
    SDK's sampler."""
    from opentelemetry.sdk.trace import sampling

    root = sampler.removeprefix("parentbased_")
    chosen = {"always_on": sampling.ALWAYS_ON, "always_off": sampling.ALWAYS_OFF}.get(
        root
    ) or sampling.TraceIdRatioBased(ratio)
    return sampling.ParentBased(chosen) if sampler.startswith("parentbased_") else chosen


def _reads_traceparent() -> bool:
    """Whether OTEL_PROPAGATORS has the W3C trace context (its default does): without
    it, an incoming traceparent is no parent, and the ratio decides."""
    import os

    names = [n.strip().lower() for n in os.environ.get("OTEL_PROPAGATORS", "").split(",")]
    names = [n for n in names if n]
    if not names:
        return True
    return names[0] != "none" and "tracecontext" in names


def _without_propagators_a_context() -> None:
    """OTEL_PROPAGATORS=none leaves opentelemetry with a composite of no propagators,
    whose extract gives None for the request's context: the instrumentations then
    failed on it, and every sampled request, health included, was an empty 500. A
    propagator that reads and writes nothing, and gives an empty context, in its place."""
    from opentelemetry import propagate
    from opentelemetry.context import Context
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.propagators.textmap import TextMapPropagator

    current = propagate.get_global_textmap()
    if not isinstance(current, CompositePropagator) or getattr(current, "_propagators", [1]):
        return

    class NoPropagation(TextMapPropagator):
        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
            return context if context is not None else Context()

        def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
            return None

        @property
        def fields(self) -> set[str]:
            return set()

    propagate.set_global_textmap(NoPropagation())


def _requests_only() -> Any:
    """A server worker's sampler. TraceGate has sampled the requests that reach the
    instrumentations: their server spans, and every span under one, are recorded. A span
    that is neither is a background thread's SQL (the feed cache's LISTEN and NOTIFY,
    the replica watcher's looks, a reachability probe), outside any request: dropped.
    (ALWAYS_ON recorded those as traces of their own, whatever OTEL_TRACES_SAMPLER said:
    the replica watcher alone, two a second.)"""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    get_current_span, server = trace.get_current_span, SpanKind.SERVER
    record, drop = Decision.RECORD_AND_SAMPLE, SamplingResult(Decision.DROP)

    class RequestsOnly(Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> Any:
            # As ALWAYS_ON decides, from the parent's context fetched once (ALWAYS_ON
            # would fetch it again, on every span of a sampled request).
            parent = get_current_span(parent_context).get_span_context()
            if parent.is_valid:
                return SamplingResult(record, attributes, parent.trace_state)
            return SamplingResult(record, attributes, None) if kind is server else drop

        def get_description(self) -> str:
            return "RequestsOnly"

    return RequestsOnly()


def active() -> bool:
    """Whether a span started here would be part of a trace: tracing is on, this request
    was sampled (TraceGate), and instrumentation is not suppressed."""
    return tracer is not None and not _unsampled.get() and _instrumentation_enabled()


def stop(timeout: float = STOP_FLUSH_SECONDS) -> None:
    """Send what is queued and stop, waiting `timeout` seconds at most: with a receiver
    that is slow or gone, the SDK's own shutdown could hold a stopping worker for 30 s or
    more (ECS kills a task 30 s after asking it to stop)."""
    global _provider, tracer, _pooled_connections
    if _provider is None:
        return
    provider, _provider, tracer = _provider, None, None
    if _pooled_connections is not None:
        _pooled_connections.unsampled = None
        _pooled_connections = None
    flushing = threading.Thread(target=provider.shutdown, name="cruddur-trace-flush", daemon=True)
    flushing.start()
    flushing.join(timeout)


def force_flush(timeout_millis: int = 5000) -> None:
    """Send the queued spans now (the Lambda, before its environment is frozen)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


class Sampling:
    """OTEL_TRACES_SAMPLER's rule for a request: parent-based samplers follow the
    caller's traceparent flag; otherwise `ratio` of the requests (1 or 0 for always_*),
    decided from the caller's trace id when there is one, as the SDK's TraceIdRatioBased
    decides: every service with the same ratio keeps or drops the same traces (a draw per
    request kept a caller's trace in one request and dropped it in the next)."""

    def __init__(self, sampler: str, ratio: float, *, follows_traceparent: bool = True) -> None:
        self.follows_traceparent = follows_traceparent
        self.parent_based = sampler.startswith("parentbased_")
        root = sampler.removeprefix("parentbased_")
        self.ratio = {"always_on": 1.0, "always_off": 0.0}.get(root, ratio)
        from opentelemetry.sdk.trace.sampling import TraceIdRatioBased  # tracing is on

        # The SDK's own bound: a trace id whose low 64 bits are under it is kept.
        self.bound = TraceIdRatioBased.get_bound_for_rate(self.ratio)

    def sampled(self, environ: dict[str, Any]) -> bool:
        header = environ.get("HTTP_TRACEPARENT")
        if header and self.follows_traceparent:
            parent = _TRACEPARENT.match(header)
            if (
                parent
                and parent[1] != "ff"
                and not (parent[1] == "00" and parent[5])
                and parent[2] != _ZERO_TRACE
                and parent[3] != _ZERO_SPAN
            ):
                if self.parent_based:
                    return bool(int(parent[4], 16) & 1)
                return int(parent[2][16:], 16) < self.bound
        ratio = self.ratio
        return ratio >= 1.0 or (ratio > 0.0 and random.random() < ratio)


# W3C trace context: version-traceid-parentid-flags, lowercase hex; the propagator's own
# rule (opentelemetry's tracecontext.py), so that a header it ignores (version ff, or 00
# with more after the flags) is decided by the ratio here too, not taken as a sampled
# parent: such requests were traced as new roots whatever the ratio.
_TRACEPARENT = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$"
)
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


class TraceGate:
    """WSGI middleware deciding, first thing, whether a request is traced.

    A sampled request goes through Flask's instrumentation; any other runs the plain app
    marked unsampled (`_unsampled`), so the Flask hooks, the SQL statements' tracer and
    the use-case spans cost it next to nothing: one test each. (Left to the
    instrumentations, an unsampled request still paid for its attributes, contexts and
    non-recording spans: measured in one process, 260-280 µs of CPU on a feed request.)
    """

    def __init__(
        self,
        plain: Any,
        instrumented: Any,
        sampling: Sampling,
        shortcut: tuple[Callable[[dict[str, Any]], bool], Any] | None = None,
    ) -> None:
        self.plain = plain
        self.instrumented = instrumented
        self.sampling = sampling
        # (matches, app): a sampled request that matches goes to the shortcut's app.
        self.shortcut_matches, self.shortcut = shortcut or (None, None)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.sampling.sampled(environ):
            environ[TRACED_KEY] = True
            if self.shortcut is not None and self.shortcut_matches(environ):
                return self.shortcut(environ, start_response)
            return self.instrumented(environ, start_response)
        token = _unsampled.set(True)
        try:
            return self.plain(environ, start_response)
        finally:
            _unsampled.reset(token)


def _when_traced(hooks: list[Callable[..., Any]], *, reverse: bool = False) -> Callable[..., Any]:
    """One Flask hook that runs `hooks` (the instrumentation's, ours) for a sampled
    request only: for any other, one test instead of a call per hook (Flask also checks
    each hook for a coroutine on each request). reverse: in reverse order, as Flask runs
    teardown hooks."""
    from flask import request

    hooks = hooks[::-1] if reverse else list(hooks)

    def when_traced(*args: Any) -> Any:
        if request.environ.get(TRACED_KEY):
            for hook in hooks:
                result = hook(*args)
                if result is not None:  # a before_request hook that answers
                    return result
        return None

    return when_traced


@dataclass(frozen=True)
class Shortcut:
    """Requests the app answers without Flask (the home feed's first page): sampled, they
    are traced by the WSGI instrumentation, which the Flask one is built on, with the
    same server span (name, attributes, parent) around the same use-case and SQL spans.
    Through Flask and its instrumentation, a sampled first page ran ~14,300 Python
    bytecodes; this way ~10,100 (bench/telemetry_bytecodes.py; README, "Measured")."""

    route: str  # the route's template: the span's name (with the method) and http.route
    matches: Callable[[dict[str, Any]], bool]  # whether a request is one the shortcut answers
    over: Callable[[Any], Any]  # the shortcut's app, over the app it hands any other to


def instrument_app(
    app: Any, untraced: Callable[[Any], Any] | None = None, shortcut: Shortcut | None = None
) -> None:
    """A server span per sampled request (continuing an incoming traceparent), named by
    route, by the Flask instrumentation, behind a `TraceGate`. `untraced`: wraps the
    plain app that the gate's unsampled requests go to; `shortcut`: sampled requests
    answered without Flask."""
    from flask import request
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider

    plain = app.wsgi_app
    before = app.before_request_funcs.setdefault(None, [])
    teardown = app.teardown_request_funcs.setdefault(None, [])
    first_before, first_teardown = len(before), len(teardown)
    FlaskInstrumentor().instrument_app(
        app,
        tracer_provider=_provider,
        enable_commenter=False,
        request_hook=_server_span_started,
        meter_provider=NoOpMeterProvider(),  # its metrics are not exported: Prometheus's are
    )
    _settle_flask_instrumentation(app)

    @app.before_request
    def _trim() -> None:
        # After the instrumentation's hook has set the span's attributes (again).
        environ = request.environ
        span = environ.get(_SERVER_SPAN_KEY)
        if span is not None:
            _trim_server_span(span, environ, matched=request.url_rule is not None)

    # The instrumentation's hooks (and ours) run for sampled requests only.
    before[first_before:] = [_when_traced(before[first_before:])]
    teardown[first_teardown:] = [_when_traced(teardown[first_teardown:], reverse=True)]
    shortcut_app = None
    if shortcut is not None and not _urls_excluded():
        shortcut_app = (shortcut.matches, _traced_shortcut(shortcut, plain))
    app.wsgi_app = TraceGate(
        plain if untraced is None else untraced(plain), app.wsgi_app, _sampling, shortcut_app
    )
    app.ensure_sync = _known_sync(app.ensure_sync)


def _urls_excluded() -> bool:
    """Whether OTEL_PYTHON_FLASK_EXCLUDED_URLS (or the general _EXCLUDED_URLS) names any
    URL: then every request goes through the Flask instrumentation, which skips them."""
    import os

    general = os.environ.get("OTEL_PYTHON_EXCLUDED_URLS", "")
    return bool(os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS", general).strip())


def _traced_shortcut(shortcut: Shortcut, plain: Any) -> Any:
    """The shortcut's app in the WSGI instrumentation's server span, named by route. A
    request it hands on (its read failed) gets its answer from the plain Flask app inside
    that span, the Flask instrumentation's hooks skipped: one server span either way."""
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    from opentelemetry.metrics import NoOpMeterProvider

    def handed_on(environ: dict[str, Any], start_response: Any) -> Any:
        environ.pop(TRACED_KEY, None)
        return plain(environ, start_response)

    def started(span: Any, environ: dict[str, Any]) -> None:
        _remember_ids(span, environ)
        if span.is_recording():
            name = f"{environ['REQUEST_METHOD']} {shortcut.route}"
            if span.name != name:  # its own name is method and path: the same without variables
                span.update_name(name)
            span.set_attribute(_ROUTE, shortcut.route)

    traced = OpenTelemetryMiddleware(
        shortcut.over(handed_on),
        request_hook=started,
        tracer_provider=_provider,
        meter_provider=NoOpMeterProvider(),  # as the Flask instrumentation's
    )
    # Its own "no histogram" for the no-op ones: no duration attributes made for them.
    traced.duration_histogram_old = traced.duration_histogram_new = None
    return traced


def _known_sync(ensure_sync: Callable[..., Any]) -> Callable[..., Any]:
    """Flask's `ensure_sync`, remembering the plain functions it returned as they are.

    Flask asks it, on every request, whether each hook and the view is a coroutine
    function (inspect's checks, ~55 bytecodes a function): with tracing on, every
    request, sampled or not, has two hooks more to ask about. A function that is not a
    coroutine function stays one; an async one still goes to Flask each time."""
    known: dict[Any, Any] = {}

    def known_sync(func: Callable[..., Any]) -> Callable[..., Any]:
        if func in known:
            return func
        result = ensure_sync(func)
        if result is func:
            if len(known) >= _KNOWN_SYNC:
                known.clear()
            known[func] = True
        return result

    return known_sync


_KNOWN_SYNC = 512  # functions remembered at most (hooks, views, error handlers)


def _server_span_started(span: Any, environ: dict[str, Any]) -> None:
    """The Flask instrumentation's request hook, given the server span it started.

    Its ids go in the environ for the request's log line (written at the WSGI edge,
    after the span has ended), and the span for `_trim`.

    The instrumentation gives the span the request's attributes at its start, then sets
    each again (~95 bytecodes an attribute, through the SDK's lock and validation, to
    store the value it holds). Setting the very value an attribute holds is skipped on
    this span; any other set goes to the SDK. (Skipping keeps the attributes' order too:
    each is set again in the order it has.)"""
    _remember_ids(span, environ)
    if not span.is_recording():
        return
    environ[_SERVER_SPAN_KEY] = span
    held = getattr(span, "_attributes", None)  # the SDK span's own (BoundedAttributes)
    if held is not None:
        # Its plain dict's get when it has one: the mapping's own get is two Python calls,
        # and raises and catches a KeyError for each attribute it does not hold yet.
        store = getattr(held, "_dict", None)
        get = store.get if type(store) is dict else held.get
        span.set_attribute = functools.partial(_set_if_changed, get, span.set_attribute)


def _remember_ids(span: Any, environ: dict[str, Any]) -> None:
    context = span.get_span_context()
    if context.is_valid:
        environ[TRACE_IDS_KEY] = (format(context.trace_id, "032x"), format(context.span_id, "016x"))


def _set_if_changed(
    get: Callable[[str, Any], Any], set_attribute: Callable[[str, Any], None], key: str, value: Any
) -> None:
    if get(key, _ABSENT) is not value:
        set_attribute(key, value)


_ABSENT = object()


def _closure_cell(function: Any, name: str) -> Any:
    """The cell holding free variable `name` in `function`'s closure (shared with every
    closure made in the same scope), or None."""
    names = getattr(getattr(function, "__code__", None), "co_freevars", ())
    return function.__closure__[names.index(name)] if name in names else None


def _settle_flask_instrumentation(app: Any) -> None:
    """Settle, once, what the Flask instrumentation would otherwise find out on every
    sampled request, from settings that do not change while the process runs.

    - Excluded URLs (OTEL_PYTHON_FLASK_EXCLUDED_URLS, OTEL_PYTHON_EXCLUDED_URLS): with
      none set, its hooks still build `request.url` (werkzeug's, ~800 bytecodes) to ask
      an empty list whether the URL is excluded, in before_request, start_response and
      teardown. Its closures are given None, its own "nothing excluded".
    - Captured headers (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST and
      _RESPONSE): with neither set, the WSGI helpers it calls read three variables from
      the environment and copy the request's headers to capture none (~700 bytecodes);
      they are given functions returning what those return then, no attributes.
    - Its duration histograms, given a no-op meter provider (its metrics are not
      exported; `cruddur.telemetry.metrics` serves Prometheus's): None, its own "no
      histogram", so no attributes are filtered for them after each request.
    - The request method's sanitizing (three environment reads a request): remembered.
    - The request's attributes, which it collects twice from the same environ: once
      (`_collect_request_attributes`).

    A variable that is set keeps the instrumentation's own behaviour."""
    import os

    from opentelemetry.instrumentation import flask, wsgi
    from opentelemetry.metrics import NoOpHistogram
    from opentelemetry.util import http

    for hook in (app.wsgi_app, app._before_request, app._teardown_request):
        cell = _closure_cell(hook, "excluded_urls")
        excluded = getattr(cell, "cell_contents", None)
        if isinstance(excluded, http.ExcludeList) and not excluded._excluded_urls:
            cell.cell_contents = None
    for name in ("duration_histogram_old", "duration_histogram_new"):
        cell = _closure_cell(app.wsgi_app, name)
        if isinstance(getattr(cell, "cell_contents", None), NoOpHistogram):
            cell.cell_contents = None  # its own "no histogram": no attributes made for it
    own = _wsgi_helpers.setdefault("sanitize_method", http.sanitize_method)
    _sanitized.clear()
    _sanitized_by[0] = own
    for module in (flask, wsgi):
        if getattr(module, "sanitize_method", None) in (own, _sanitize_method):
            module.sanitize_method = _sanitize_method
    own = _wsgi_helpers.setdefault("collect_request_attributes", wsgi.collect_request_attributes)
    _collected_by[0] = own
    wsgi.collect_request_attributes = _collect_request_attributes
    for variable, name in (
        (http.OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
         "collect_custom_request_headers_attributes"),
        (http.OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
         "collect_custom_response_headers_attributes"),
    ):  # fmt: skip
        own = _wsgi_helpers.setdefault(name, getattr(wsgi, name))
        setattr(wsgi, name, own if os.environ.get(variable) else _no_headers)


_wsgi_helpers: dict[str, Any] = {}  # the WSGI instrumentation's own, by name
_sanitized: dict[Any, Any] = {}  # a request method: what sanitize_method made of it
_sanitized_by: list[Any] = [None]  # opentelemetry.util.http's sanitize_method
_SANITIZED = 32  # methods remembered at most


def _sanitize_method(method: Any) -> Any:
    """opentelemetry.util.http's sanitize_method (a method name made upper case, or
    "_OTHER" for one that is not standard, unless
    OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS is set: read from the
    environment on each call, three times a sampled request), remembered by method."""
    try:
        return _sanitized[method]
    except KeyError:
        pass
    if len(_sanitized) >= _SANITIZED:  # methods are any text a client sends
        _sanitized.clear()
    sanitized = _sanitized[method] = _sanitized_by[0](method)
    return sanitized


def _no_headers(headers: Any) -> dict[str, list[str]]:
    return {}


_collected_by: list[Any] = [None]  # the WSGI instrumentation's collect_request_attributes
_COLLECTED_KEY = "cruddur.otel_request_attributes"  # in the WSGI environ, between two calls


def _collect_request_attributes(environ: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    """The WSGI instrumentation's collect_request_attributes, once a request: the Flask
    instrumentation asks for a sampled request's attributes twice (for its metrics'
    counter in its WSGI wrapper, then for the span in its before_request hook), from the
    same environ, each time ~50k instructions. The first answer is kept in the environ
    and the second call takes a copy of it: the first caller changes its own dict only
    once the response starts (its status), after the hook. A call with other settings,
    or a third, runs the instrumentation's own. (A request with one call, the WSGI
    instrumentation's for tracing.Shortcut, copies nothing.)"""
    mode = args[0] if args else kwargs.get("sem_conv_opt_in_mode")
    kept = environ.pop(_COLLECTED_KEY, None)
    if kept is not None and kept[0] is mode and len(args) + len(kwargs) <= 1:
        return dict(kept[1])
    attributes = _collected_by[0](environ, *args, **kwargs)
    environ[_COLLECTED_KEY] = (mode, attributes)
    return attributes


# The query parameters the API reads (a page's size and cursor); any other a client
# sends, an access_token put there by mistake say, is not exported with the span.
QUERY_KEPT = frozenset({"limit", "before", "after"})
_TARGET, _URL, _QUERY = "http.target", "http.url", "url.query"  # old and new semconv
_ROUTE = "http.route"  # both


def kept_query(query: str) -> str:
    """`query` with only the QUERY_KEPT parameters, in their order. `;` separates them
    too (old parse_qs, some proxies): `limit=2;access_token=…` kept the token as limit's."""
    parts = _QUERY_SEPARATORS.split(query)
    return "&".join(p for p in parts if p.partition("=")[0] in QUERY_KEPT)


_QUERY_SEPARATORS = re.compile("[&;]")


def _trim_server_span(span: Any, environ: dict[str, Any], *, matched: bool) -> None:
    """What the Flask instrumentation recorded, made fit to export: the query string
    without the parameters the API does not read, and for a path no route matched, the
    method alone as the name (the path is any text a client sends: as a span name it
    would make a new name in the back end per request; it stays in http.target)."""
    if not matched:
        span.update_name(span.name.partition(" ")[0])
    query = environ.get("QUERY_STRING")
    if not query:
        return
    kept = kept_query(query)
    recorded = span.attributes
    for key in (_TARGET, _URL):
        value = recorded.get(key)
        if isinstance(value, str) and "?" in value:
            base = value.partition("?")[0]
            span.set_attribute(key, f"{base}?{kept}" if kept else base)
    if _QUERY in recorded:
        span.set_attribute(_QUERY, kept)


TRACED_KEY = "cruddur.traced"  # in the WSGI environ: this request was sampled
TRACE_IDS_KEY = "cruddur.trace_ids"  # in the WSGI environ: (trace id, span id) in hex
_SERVER_SPAN_KEY = "cruddur.server_span"  # in the WSGI environ: a sampled request's span


def current_ids() -> dict[str, str]:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }
