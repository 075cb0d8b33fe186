"""Keep the values of a refused row out of exported spans.

PostgreSQL's error for a refused row carries a DETAIL that quotes it ("Failing row
contains (…, miles@example.com, …)", "Key (handle)=(mdyson) already exists."), and
psycopg's str() of the error includes it. The SDK puts that text in the span that saw
the error, twice (the exception event's message and stack trace) and again in the
status: a crud's text, a sign-up's email and name would go to the tracing back end.
`ScrubbingProcessor`, ahead of the exporting processor, cuts the DETAIL (and what
follows it in that message) from an error span's events and status before they are
exported; `ScrubbingBatchSpanProcessor` is the SDK's batch processor doing the same
first, the one processor a server's provider has. It imports only OpenTelemetry's SDK
and the standard library: the sign-up Lambda uses it too.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from cruddur.telemetry.logs import without_detail as scrub

_TEXT_KEYS = ("exception.message", "exception.stacktrace")


class ScrubbingProcessor(SpanProcessor):
    """Rewrites an ended error span's exception events and status description in place,
    for the processors after it (the exporter's). Spans that did not fail cost one
    comparison; unsampled spans never reach a processor."""

    def on_end(self, span: ReadableSpan) -> None:
        if span.status.status_code is StatusCode.ERROR:
            scrub_span(span)


class ScrubbingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, scrubbing each span as `ScrubbingProcessor` does before
    queueing it: one processor where two, behind the SDK's fan-out, made three calls
    more per span (start, ending and end) for nothing but one comparison."""

    def on_end(self, span: ReadableSpan) -> None:
        if span.status.status_code is StatusCode.ERROR:
            scrub_span(span)
        super().on_end(span)


def scrub_span(span: ReadableSpan) -> None:
    """Cut the DETAIL from an ended error span's status description and exception events."""
    # ReadableSpan has no setters: the object on_end gets is made for this end() and
    # handed to each processor in turn, so the ones after the scrubbing see the change.
    status = span.status
    if status.description and "\nDETAIL:" in status.description:
        span._status = Status(StatusCode.ERROR, scrub(status.description))  # type: ignore[attr-defined]
    if any(_needs_scrub(event) for event in span.events):
        span._events = tuple(_scrubbed(event) for event in span.events)  # type: ignore[attr-defined]


def _needs_scrub(event: Event) -> bool:
    attributes = event.attributes or {}
    return any("\nDETAIL:" in str(attributes.get(key, "")) for key in _TEXT_KEYS)


def _scrubbed(event: Event) -> Event:
    if not _needs_scrub(event):
        return event
    attributes: dict[str, Any] = dict(event.attributes or {})
    for key in _TEXT_KEYS:
        if isinstance(attributes.get(key), str):
            attributes[key] = scrub(attributes[key])
    return Event(event.name, attributes, event.timestamp)


def put_first(provider: Any, processor: SpanProcessor) -> None:
    """Add `processor` ahead of those the provider has (a provider someone else set up,
    the ADOT layer's): it must run before a batch processor queues the span."""
    active = getattr(provider, "_active_span_processor", None)
    processors = getattr(active, "_span_processors", None)
    if isinstance(processors, tuple) and hasattr(active, "_lock"):
        with active._lock:
            active._span_processors = (processor, *processors)
        return
    provider.add_span_processor(processor)
