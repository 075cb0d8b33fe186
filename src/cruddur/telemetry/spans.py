"""Spans around the use cases of `services/`, as the original's `home-activities` span.

    @use_case("home-activities", lambda result, db, page: {"app.page_limit": page.limit})

While tracing is off the decorated function is called straight through (one attribute
test); the attributes are computed only for a span that is recorded (sampled).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from cruddur.telemetry import tracing

F = TypeVar("F", bound=Callable[..., Any])
Describe = Callable[..., dict[str, Any]]

_api: tuple[Any, Any, Any] | None = None  # OpenTelemetry's, imported by the first span


def _load_api() -> tuple[Any, Any, Any]:
    global _api
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode, set_span_in_context

    def error(description: str) -> Any:
        return Status(StatusCode.ERROR, description)

    _api = (context, set_span_in_context, error)
    return _api


def use_case(
    name: str, describe: Describe | None = None, *, given: Describe | None = None
) -> Callable[[F], F]:
    """Run the function in a span `name`; `describe(result, *args, **kwargs)` gives the
    attributes a person would filter on that come of its result, `given(*args,
    **kwargs)` those its arguments say, set at the start: a write that fails still says
    whose it was."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def traced(*args: Any, **kwargs: Any) -> Any:
            if not tracing.active():
                return function(*args, **kwargs)
            # What start_as_current_span does, without its two generator-based context
            # managers: the span is current while the function runs, an exception is
            # recorded on it and sets its status, and it ends in any case.
            context, in_context, error = _api or _load_api()
            span = tracing.tracer.start_span(name)
            if given is not None and span.is_recording():
                span.set_attributes(
                    {k: v for k, v in given(*args, **kwargs).items() if v is not None}
                )
            token = context.attach(in_context(span))
            try:
                result = function(*args, **kwargs)
                if describe is not None and span.is_recording():
                    attributes = describe(result, *args, **kwargs)
                    span.set_attributes({k: v for k, v in attributes.items() if v is not None})
                return result
            except Exception as exc:
                if span.is_recording():
                    span.record_exception(exc)
                    span.set_status(error(f"{type(exc).__name__}: {exc}"))
                raise
            finally:
                context.detach(token)
                span.end()

        return traced  # type: ignore[return-value]

    return decorate
