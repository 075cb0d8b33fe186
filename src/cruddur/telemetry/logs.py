"""Log records as one JSON object a line on stdout, or as text for people (`--dev`).

stdout is where ECS's awslogs driver (and so CloudWatch) collects a container's output;
one object a line keeps a traceback inside its record, searchable by its request id.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from cruddur.config import TelemetrySettings

# Attributes every LogRecord has; anything else was passed in `extra` and is a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_LEVELS = {"WARNING": "warning", "CRITICAL": "critical"}

_configured = False


def _iso(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the record's `extra` fields, and a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": _iso(record.created),
            "level": _LEVELS.get(record.levelname, record.levelname.lower()),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which worker
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and value is not None:
                fields[key] = value
        if "trace_id" not in fields:
            fields.update(current_trace_ids())
        if record.exc_info:
            kind, error, tb = record.exc_info
            fields["error"] = f"{kind.__name__}: {error}" if kind else None
            fields["traceback"] = "".join(traceback.format_exception(kind, error, tb))
        return json.dumps(fields, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For a terminal: the time, level, logger and message, then the `extra` fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and value is not None and key not in _IN_MESSAGE
        )
        if not extra:
            return line
        first, newline, rest = line.partition("\n")  # keep a traceback below the line
        return f"{first} [{extra}]{newline}{rest}"


# The request line's message already says these.
_IN_MESSAGE = frozenset({"method", "route", "status", "duration_ms", "path"})


def current_trace_ids() -> dict[str, str]:
    """The current span's trace and span id (hex, as tracing back ends show them), if any."""
    from cruddur.telemetry import tracing

    if not tracing.enabled():
        return {}
    return tracing.current_ids()


Line = tuple[float, str, dict[str, Any]]  # (time, message, fields) of a request's line
RequestWriter = Callable[[list[Line]], None]
PIPE_BUF = 4096  # a write to a pipe up to this size is never split or interleaved


def request_writer() -> RequestWriter | None:
    """How requests' lines are written, several at a time, or None when the level leaves
    them out.

    In JSON on our own stdout handler, the lines are built here and written with as few
    os.write calls as fit: the logging module's record, caller lookup and handler cost
    several times as much. Each write holds whole lines and at most PIPE_BUF bytes, so
    lines stay whole between the workers that share stdout. Anywhere else (text, a
    test's handler) they go through logging.
    """
    logger = logging.getLogger(REQUEST_LOGGER)
    if not logger.isEnabledFor(logging.INFO):
        return None
    if _json_stdout is None:

        def log_each(lines: list[Line]) -> None:
            for _, message, fields in lines:
                logger.info(message, extra=fields)

        return log_each
    fd, pid = _json_stdout, os.getpid()

    def write(lines: list[Line]) -> None:
        chunk = b""
        for created, message, fields in lines:
            record = {
                "time": _iso(created),
                "level": "info",
                "logger": REQUEST_LOGGER,
                "message": message,
                "pid": pid,
                **{key: value for key, value in fields.items() if value is not None},
            }
            line = (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode()
            if chunk and len(chunk) + len(line) > PIPE_BUF:
                os.write(fd, chunk)
                chunk = b""
            chunk += line
        if chunk:
            os.write(fd, chunk)

    return write


def writes_json_to_stdout() -> bool:
    return _json_stdout is not None


REQUEST_LOGGER = "cruddur.request"
_json_stdout: int | None = None  # stdout's descriptor, when our JSON handler writes there


def configure(settings: TelemetrySettings, *, dev: bool = False) -> None:
    """Route the root logger to stdout in the chosen format, once per process.

    A process whose root logger already has a handler (pytest's, an embedding program's)
    keeps it: only the level is set.
    """
    global _configured, _json_stdout
    root = logging.getLogger()
    root.setLevel(settings.log_level.upper())
    if _configured or root.handlers:
        return
    text = settings.log_format == "text" or (dev and not settings.log_format_given)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    root.addHandler(handler)
    _configured = True
    if not text:
        try:
            _json_stdout = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):  # a stream without a descriptor
            _json_stdout = None
