"""The use-case spans of services/ (telemetry/spans.py), recorded by the SDK in memory."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cruddur.telemetry import spans, tracing


@pytest.fixture
def memory(monkeypatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("cruddur"))
    monkeypatch.setattr(tracing, "_instrumentation_enabled", is_instrumentation_enabled)
    return exporter


def test_a_use_case_span_is_current_inside_and_has_its_attributes(memory) -> None:
    @spans.use_case("home-activities", lambda result, limit: {"app.result_length": len(result),
                                                               "app.none": None})  # fmt: skip
    def feed(limit: int) -> list[int]:
        with tracing.tracer.start_as_current_span("SELECT"):
            return list(range(limit))

    assert feed(3) == [0, 1, 2]
    statement, use_case = memory.get_finished_spans()
    assert use_case.name == "home-activities" and statement.name == "SELECT"
    assert statement.parent.span_id == use_case.context.span_id
    assert dict(use_case.attributes) == {"app.result_length": 3}
    assert use_case.status.status_code == StatusCode.UNSET
    assert not trace.get_current_span().get_span_context().is_valid  # detached after


def test_an_error_is_recorded_on_the_use_case_span_and_raised(memory) -> None:
    @spans.use_case("create-activity", lambda result: {"app.x": 1})
    def create() -> None:
        raise ValueError("no such user")

    with pytest.raises(ValueError, match="no such user"):
        create()
    (span,) = memory.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "ValueError: no such user"
    (event,) = span.events
    assert event.name == "exception" and event.attributes["exception.type"] == "ValueError"
    assert "app.x" not in span.attributes
    assert not trace.get_current_span().get_span_context().is_valid
