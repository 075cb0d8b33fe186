"""The exporter's own protobuf writer (telemetry/otlp.py) gives the SDK encoder's bytes."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from cruddur.telemetry.otlp import SpanEncoder


def _spans(resource: Resource, limits: SpanLimits | None = None) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, span_limits=limits or SpanLimits())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    versioned = provider.get_tracer("a", "1.0", schema_url="https://s", attributes={"k": "v"})
    plain = provider.get_tracer("b")
    remote = SpanContext(
        0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1),
        trace_state=TraceState([("k", "v"), ("a", "b")]),
    )  # fmt: skip
    caller = trace.set_span_in_context(NonRecordingSpan(remote))
    attributes = {"s": 'é\u2028"x', "b": False, "i": -5, "f": 1.5, "l": [1, 2], "n": [True]}
    with versioned.start_as_current_span(
        "GET /api/activities/home", kind=SpanKind.SERVER, context=caller,
        attributes=attributes, links=[Link(remote, {"x": 1}), Link(remote)],
    ) as root:  # fmt: skip
        root.add_event("e", {"a": True, "t": ("x", "y")})
        root.add_event("at zero", timestamp=0)
        root.set_attribute("big", 2**40)
        root.set_attribute("bytes", b"\x00\x01")
        root.set_attribute("long", "x" * 300)
        with plain.start_as_current_span("", kind=SpanKind.CLIENT) as client:
            client.set_status(Status(StatusCode.ERROR, "bad"))
            client.set_attributes({"t": ("a", "b"), "e": [], "z": 0, "zs": "", "neg": -(2**63)})
        for kind in (SpanKind.INTERNAL, SpanKind.PRODUCER, SpanKind.CONSUMER):
            with versioned.start_as_current_span("ok", kind=kind) as child:
                child.set_status(StatusCode.OK)
                child.set_attributes({"i": 2**63 - 1, "f": float("-inf"), "s": "GET"})
    unstarted = plain.start_span("never ended")
    return [*memory.get_finished_spans(), unstarted]


@pytest.mark.parametrize(
    "limits",
    [None, SpanLimits(max_attributes=3, max_events=1, max_links=1, max_span_attributes=4)],
)
def test_the_request_is_the_sdk_encoders_byte_for_byte(limits: SpanLimits | None) -> None:
    spans = _spans(Resource({"service.name": "backend-flask", "n": 3}), limits)
    encoder = SpanEncoder()
    expected = encode_spans(spans).SerializePartialToString()
    assert encoder.encode(spans) == expected
    assert encoder.encode(spans) == expected  # again, from what it kept
    # The receiver sees one resource, two scopes, every span.
    (resource_spans,) = ExportTraceServiceRequest.FromString(expected).resource_spans
    assert sum(len(scope.spans) for scope in resource_spans.scope_spans) == len(spans)


def test_equal_resources_and_scopes_are_grouped_as_the_sdk_groups_them() -> None:
    first = _spans(Resource({"service.name": "one"}))
    again = _spans(Resource({"service.name": "one"}))  # equal, other objects
    other = _spans(Resource({"service.name": "two"}, schema_url="https://r"))
    mixed = [first[0], other[0], again[1], first[2], other[3], again[0]]
    assert SpanEncoder().encode(mixed) == encode_spans(mixed).SerializePartialToString()


def test_a_value_that_cannot_be_encoded_is_left_out_and_logged(caplog) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attributes({"fine": 1, "too big": 2**64, "after": "x"})
    spans = memory.get_finished_spans()
    with caplog.at_level(logging.ERROR):
        ours = SpanEncoder().encode(spans)
    assert "too big" in caplog.text
    assert ours == encode_spans(spans).SerializePartialToString()
    sent = ExportTraceServiceRequest.FromString(ours)
    (span,) = sent.resource_spans[0].scope_spans[0].spans
    assert [a.key for a in span.attributes] == ["fine", "after"]


def test_attributes_kept_encoded_are_told_apart_by_type_and_sign() -> None:
    # Equal as keys, not as bytes: 1 and True, 0.0 and -0.0; a whole span's attributes
    # are kept encoded, and must not stand in for another's.
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    # And lists equal as keys, not as bytes (a review: (1.0, 2.0) after (1, 2) went out
    # as integers).
    for value in (1, True, 1, 0.0, -0.0, 0.0, "1", 1, (1, 2), (True, False), (1.0, 2.0)):
        with tracer.start_as_current_span("s") as span:
            span.set_attributes({"x": value, "route": "/api/activities/home"})
    spans = memory.get_finished_spans()
    encoder = SpanEncoder()
    expected = encode_spans(spans).SerializePartialToString()
    assert encoder.encode(spans) == expected
    assert encoder.encode(spans) == expected


def test_what_the_encoder_keeps_is_bounded_in_bytes_whatever_clients_send() -> None:
    # A review: values a client chooses (the URL, the user agent) were kept encoded up to
    # 4,096 pairs and 1,024 blocks, whatever their size: 4,000 requests for distinct 30 kB
    # paths left each worker holding ~300 MB.
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    encoder = SpanEncoder()
    for n in range(400):
        with tracer.start_as_current_span("GET", attributes={"http.url": f"/{n}" + "a" * 30_000}):
            pass
        spans = memory.get_finished_spans()
        assert encoder.encode(spans) == encode_spans(spans).SerializePartialToString()
        memory.clear()
    kept = sum(map(len, encoder._pairs.values())) + sum(map(len, encoder._blocks.values()))
    assert kept < 2 * 2**20, kept  # it was 24 MB: 400 pairs and 400 blocks of 30 kB
