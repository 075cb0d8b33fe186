"""The use-case spans of services/ (telemetry/spans.py), recorded by the SDK in memory."""

from __future__ import annotations

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cruddur.telemetry import spans, tracing
from cruddur.telemetry.scrub import ScrubbingBatchSpanProcessor, ScrubbingProcessor


@pytest.fixture
def memory(monkeypatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(ScrubbingProcessor())  # as tracing.start sets it up
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


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        # A CHECK's DETAIL quotes the whole row; a unique key's, the value.
        ("INSERT INTO users (display_name, email, handle, cognito_user_id) "
         "VALUES ('Miles\n\nDyson', 'miles@cyberdyne.example', 'no spaces', 'sub-1')",
         "users_handle_check"),
        ("INSERT INTO users (display_name, email, handle, cognito_user_id) "
         "VALUES ('Miles Dyson', 'miles@cyberdyne.example', 'andrewbrown', 'sub-2')",
         "users_handle_key"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("batched", [False, True], ids=["processors", "one-processor"])
def test_a_refused_rows_values_stay_out_of_the_span(
    memory, monkeypatch, seeded_db: str, statement: str, constraint: str, batched: bool
) -> None:
    provider = TracerProvider()  # a server's arrangement: one processor scrubs and queues
    provider.add_span_processor(ScrubbingBatchSpanProcessor(memory))
    if batched:
        monkeypatch.setattr(tracing, "tracer", provider.get_tracer("cruddur"))

    @spans.use_case("sign-up")
    def insert() -> None:
        with psycopg.connect(seeded_db) as conn:
            conn.execute(statement)

    with pytest.raises(psycopg.IntegrityError) as raised:
        insert()
    assert "DETAIL" in str(raised.value)  # the program still gets all of it
    provider.force_flush()
    (span,) = memory.get_finished_spans()
    (event,) = span.events
    exported = [span.status.description, *map(str, event.attributes.values())]
    assert constraint in span.status.description
    assert constraint in event.attributes["exception.message"]
    assert "Traceback" in event.attributes["exception.stacktrace"]
    for text in exported:
        for value in ("Miles", "Dyson", "miles@", "andrewbrown", "no spaces"):
            assert value not in text, text
