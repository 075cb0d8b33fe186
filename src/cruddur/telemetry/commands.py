"""Spans for the CLI's long verbs (`db migrate`, `db rollback`, `db seed`), when an OTLP
endpoint is set: one span for the command, with the numeric and on/off options given
(on the command line or in the environment), and under it a span per SQL statement.
Sent before the command returns."""

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
            options = _given_options(kwargs)
            try:
                with tracing.tracer.start_as_current_span(
                    f"cruddur {name}", attributes={"cruddur.command": name, **options}
                ):
                    return command(*args, **kwargs)
            finally:
                tracing.stop()

        return run  # type: ignore[return-value]

    return decorate


def _given_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The options that are numbers or flags (text, paths and names, stays out), and only
    those the user gave: a default (`db seed`'s --users 1000 without --fake) did not apply."""
    import click
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {
        f"cruddur.option.{key}": value
        for key, value in kwargs.items()
        if isinstance(value, bool | int | float)
        and (ctx is None or ctx.get_parameter_source(key) in given)
    }
