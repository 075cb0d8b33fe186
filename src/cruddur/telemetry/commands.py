"""Spans for the CLI's long verbs (`db migrate`, `db rollback`, `db seed`), when an OTLP
endpoint is set: one span for the command, with its numeric and on/off options, and
under it a span per SQL statement. Sent before the command returns."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from cruddur.config import TelemetrySettings

F = TypeVar("F", bound=Callable[..., Any])


def traced_command(name: str) -> Callable[[F], F]:
    """Put under the click decorators: `@traced_command("db migrate")`."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            settings = TelemetrySettings.from_env(dict(os.environ))
            if not settings.traces:
                return command(*args, **kwargs)
            # Only with traces on: every db verb (--help too) imports this module.
            from cruddur.telemetry import logs, tracing

            logs.redact_stderr(settings.secrets)  # the exporter's warnings quote the endpoint
            tracing.start(settings)
            # Options that are numbers or flags; text (paths, names) stays out.
            options = {
                f"cruddur.option.{key}": value
                for key, value in kwargs.items()
                if isinstance(value, bool | int | float)
            }
            try:
                with tracing.tracer.start_as_current_span(
                    f"cruddur {name}", attributes={"cruddur.command": name, **options}
                ):
                    return command(*args, **kwargs)
            finally:
                tracing.stop()

        return run  # type: ignore[return-value]

    return decorate
