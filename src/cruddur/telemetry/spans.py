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


def use_case(name: str, describe: Describe | None = None) -> Callable[[F], F]:
    """Run the function in a span `name`; `describe(result, *args, **kwargs)` gives the
    attributes a person would filter on."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def traced(*args: Any, **kwargs: Any) -> Any:
            if not tracing.active():
                return function(*args, **kwargs)
            with tracing.tracer.start_as_current_span(name) as span:
                result = function(*args, **kwargs)
                if describe is not None and span.is_recording():
                    attributes = describe(result, *args, **kwargs)
                    span.set_attributes({k: v for k, v in attributes.items() if v is not None})
                return result

        return traced  # type: ignore[return-value]

    return decorate
