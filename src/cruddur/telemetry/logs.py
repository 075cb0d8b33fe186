"""Log records as one JSON object a line on stdout, or as text for people (`--dev`).

stdout is where ECS's awslogs driver (and so CloudWatch) collects a container's output;
one object a line keeps a traceback inside its record, searchable by its request id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from json.encoder import encode_basestring
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


# PostgreSQL's DETAIL quotes a refused row (a crud's text, a user's email), and psycopg's
# str() of the error carries it: from its "DETAIL:" line to the end of that error's text
# (in a traceback, the blank line before a chained exception's section, or the end).
_DETAIL = re.compile(r"\nDETAIL:.*?(?=\n\n(?:The above|During handling)|\Z)", re.DOTALL)
CUT = "\nDETAIL: (not shown: it may quote the row's values)"


def without_detail(text: str) -> str:
    """`text` without PostgreSQL's DETAIL and what follows it in the same error (for
    the log, and spans: telemetry/scrub.py)."""
    return _DETAIL.sub(CUT, text) if "\nDETAIL:" in text else text


REDACTED = "***"


class Redactor(logging.Filter):
    """On a handler: cuts each of `secrets` (TelemetrySettings.secrets: the OTLP endpoint's
    query and userinfo, the headers' values) out of a record's message and exception.

    The exporter's warnings quote the URL they failed to reach ("Max retries exceeded
    with url: /v1/traces?api_key=…", from urllib3 through requests and the SDK), and the
    log goes to CloudWatch. They stay, as operators need them, with *** for the secret.
    A filter runs only for a record that is emitted: nothing is paid when nothing is
    logged. The record is changed in place (msg and args, exc_text, the exception's
    text), so any handler after this one sees it cut too."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(sorted({s for s in secrets if s}, key=lambda s: (-len(s), s)))

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        # A record whose message cannot be made (`log.warning("x", "extra")`): the
        # handler's emit reports it as logging always does ("--- Logging error ---"); a
        # filter runs outside emit's guard, and must not raise into the caller.
        with contextlib.suppress(Exception):
            self._cut(record)
        return True

    def _cut(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        shown = self.redact(message)
        if shown != message:
            record.msg, record.args = shown, None
        if record.exc_info and record.exc_info[0] is not None:
            kind, error, tb = record.exc_info
            text = record.exc_text or "".join(traceback.format_exception(kind, error, tb))
            shown = self.redact(text)
            if shown != text:
                # What formatters show of an exception: its text (logging.Formatter keeps
                # it in exc_text, JsonFormatter too) and its message (JsonFormatter's
                # "error"): the original exception object is left alone.
                record.exc_text = shown.rstrip("\n")
                record.exc_info = (kind, _Shown(self.redact(str(error))), tb)


class _Shown(Exception):
    """Stands for an exception whose text held a secret, with that text cut."""


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the record's `extra` fields, and a traceback.

    max_bytes: the longest line it makes (UTF-8, without its newline); past it, the
    longest texts (a traceback, a message quoting what a client sent) are cut in the
    middle, saying how much went. None: no bound (a test's handler, a file)."""

    def __init__(self, max_bytes: int | None = None) -> None:
        super().__init__()
        self.max_bytes = max_bytes

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
            fields["error"] = without_detail(f"{kind.__name__}: {error}") if kind else None
            # exc_text: the traceback a Redactor left, when it cut something from it.
            fields["traceback"] = without_detail(
                record.exc_text or "".join(traceback.format_exception(kind, error, tb))
            )
        text = _dumped(fields)
        if self.max_bytes is not None and _size(text) > self.max_bytes:
            text = _cut_to_fit(fields, self.max_bytes)
        return text


def _dumped(fields: dict[str, Any]) -> str:
    text = json.dumps(fields, default=str, ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            # A lone surrogate (bytes that were not UTF-8: an argument, a variable,
            # decoded with surrogateescape) would fail the write, or put invalid UTF-8
            # in the line: escaped (\udcff), the line stays valid JSON.
            text = json.dumps(fields, default=str)
    return text


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode(errors="surrogatepass"))


# Fields never cut: short, and what a line is found by.
_KEPT_WHOLE = frozenset({"time", "level", "logger", "pid", "request_id", "trace_id", "span_id"})


def _cut_to_fit(fields: dict[str, Any], max_bytes: int) -> str:
    """The record in at most max_bytes: each text first held to half of it, then the
    longest cut again until the line fits. Cut in the middle, saying how much went; a
    traceback keeps more of its end, where the exception and the innermost frames are.
    Only texts are cut: other values keep their JSON types."""
    fields = dict(fields)
    cuttable = [k for k, v in fields.items() if isinstance(v, str) and k not in _KEPT_WHOLE]
    for key in cuttable:
        fields[key] = _cut(fields[key], max_bytes // 2, key)
    text = _dumped(fields)
    while (excess := _size(text) - max_bytes) > 0:
        longest = max(cuttable, key=lambda k: len(fields[k]), default=None)
        if longest is not None:
            size = _escaped_size(fields[longest])
            cut = _cut(fields[longest], size - excess, longest)
        if longest is None or _escaped_size(cut) >= size:
            # Nothing left that a cut makes shorter: the record's frame alone, then.
            kept = {k: v for k, v in fields.items() if k in _KEPT_WHOLE}
            return _dumped({**kept, "message": "(a record too long for one line was cut)"})
        fields[longest] = cut
        text = _dumped(fields)
    return text


def _escaped_size(value: str) -> int:
    """Bytes `value` takes in the line, its quotes left out."""
    return _size(json.dumps(value, ensure_ascii=False)) - 2


def _cut(value: str, max_bytes: int, key: str) -> str:
    """`value` with its middle cut so that it takes at most max_bytes in the line (or just
    the note of the cut, when even that is more), keeping as much as fits: measured, since
    escapes and UTF-8 make a character 1 to 6 bytes, and not evenly along the text."""
    if _escaped_size(value) <= max_bytes:
        return value

    def kept(keep: int) -> str:
        head = keep // 3 if key == "traceback" else keep // 2
        gone = len(value) - keep
        return f"{value[:head]}…[{gone:,} characters cut]…{value[len(value) - (keep - head) :]}"

    low, high = 0, len(value) - 1  # the most characters kept that fit, searched
    while low < high:
        middle = (low + high + 1) // 2
        if _escaped_size(kept(middle)) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    return kept(low)


class TextFormatter(logging.Formatter):
    """For a terminal: the time, level, logger and message, then the `extra` fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # Without PostgreSQL's DETAIL, as in the JSON form: it may quote a row's values.
        line = without_detail(super().format(record))
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


# A finished request, as the edge hands it over (telemetry/requests.py): time.time() at
# its end, method, route template, status line, seconds, request id, (trace id, span id)
# or None, the signed-in user's uuid or None.
Finished = tuple[float, str, str, str, float, str | None, tuple[str, str] | None, Any]
# Writes the requests' lines, then, when the count (the second argument) is not 0, a
# warning that so many lines were dropped before they could be queued (requests.py).
RequestWriter = Callable[[list[Finished], int], None]
PIPE_BUF = 4096  # a write to a pipe up to this size is never split or interleaved


# A method is a client's text, as long as its headers may be (~30 kB): logged whole it
# made a line longer than PIPE_BUF, which another worker's line could split. Past this
# many characters it is cut (a made-up method still shows what it began with).
METHOD_SHOWN = 24


def shown_method(method: str) -> str:
    return method if len(method) <= METHOD_SHOWN else f"{method[:METHOD_SHOWN]}…"


def hundredths_of_ms(seconds: float) -> int:
    """A request's duration in hundredths of a millisecond, rounded: the log line's
    figures (duration_ms, and the message's tenths) are made from it with integer
    arithmetic, which costs a fraction of formatting floats."""
    return int(seconds * 100_000 + 0.5)


def request_message(method: str, route: str, status: str, seconds: float) -> str:
    tenths = (hundredths_of_ms(seconds) + 5) // 10
    return f"{shown_method(method)} {route} {status} {tenths // 10}.{tenths % 10} ms"


def request_fields(
    method: str,
    route: str,
    status: str,
    seconds: float,
    request_id: str,
    ids: tuple[str, str] | None,
    user: Any,
) -> dict[str, Any]:
    """A request line's fields as the logging path passes them (`extra=`); the JSON fast
    path writes the same keys in the same order."""
    return {
        "method": shown_method(method),
        "route": route,
        "status": int(status[:3]),
        "duration_ms": hundredths_of_ms(seconds) / 100,
        "request_id": request_id,
        "trace_id": ids[0] if ids else None,
        "span_id": ids[1] if ids else None,
        "user_uuid": user,
    }


def request_writer() -> RequestWriter | None:
    """How requests' lines are written, several at a time, or None when the level leaves
    them out.

    In JSON on our own stdout handler, each line is one f-string (see `_json_line`) and
    the lines go out with as few os.write calls as fit: the logging module's record,
    caller lookup and handler, and json.dumps of a dict, cost several times as much. Each
    write holds whole lines and at most PIPE_BUF bytes, so lines stay whole between the
    workers that share stdout. Anywhere else (text, a test's handler) they go through
    logging.
    """
    logger = logging.getLogger(REQUEST_LOGGER)
    if not logger.isEnabledFor(logging.INFO):
        return None
    if _json_stdout is None:

        def log_each(finished: list[Finished], dropped: int) -> None:
            for _, method, route, status, seconds, request_id, ids, user in finished:
                fields = request_fields(method, route, status, seconds, request_id, ids, user)
                logger.info(request_message(method, route, status[:3], seconds), extra=fields)
            if dropped:
                logger.warning(dropped_message(dropped), extra={"dropped": dropped})

        return log_each
    return json_writer(_json_stdout)


def json_writer(fd: int) -> RequestWriter:
    """request_writer's JSON path: the lines straight to the descriptor `fd`."""
    line = _json_line(os.getpid())

    def write(finished: list[Finished], dropped: int) -> None:
        chunk: list[str] = []  # lines of at most PIPE_BUF bytes in all, encoded together
        size = 0
        for request in finished:
            text = line(*request)
            length = len(text) if text.isascii() else len(text.encode())
            if chunk and size + length > PIPE_BUF:
                os.write(fd, "".join(chunk).encode())
                chunk, size = [], 0
            chunk.append(text)
            size += length
        if chunk:
            os.write(fd, "".join(chunk).encode())
        if dropped:  # rare: through logging's record and formatter, for the same form
            message, fields = dropped_message(dropped), {"dropped": dropped}
            record = logging.getLogger(REQUEST_LOGGER).makeRecord(
                REQUEST_LOGGER, logging.WARNING, __file__, 0, message, (), None, extra=fields
            )
            os.write(fd, f"{JsonFormatter().format(record)}\n".encode())

    return write


def dropped_message(dropped: int) -> str:
    return (
        f"request log: {dropped} request lines dropped since the last such note: stdout "
        "took no more (its reader stalled); the requests were answered"
    )


def _json_line(pid: int) -> Callable[..., str]:
    """The request's JSON line, the same object JsonFormatter would make of the logging
    record, built as one f-string: every string goes through json's own escaping
    (`encode_basestring`, quotes included), the ids after str() (the user's is a UUID), as
    JsonFormatter's default=str; fields that are None are left out, as JsonFormatter does.

    What a (method, route, status) gives, escaped and formatted, is made once and kept,
    as is the date and time to the second. The numbers that change are formatted from
    integers (a float's formatting, with round() and repr(), was a third of the line's
    cost): duration_ms prints as 3.90 where JsonFormatter writes 3.9, the same number."""
    quote = encode_basestring
    head = f'","level":"info","logger":"{REQUEST_LOGGER}","message":'
    known_parts: dict[tuple[str, str, str], tuple[str, str]] = {}
    clock: list[Any] = [-1, ""]  # the second, and its date and time

    def line(
        created: float,
        method: str,
        route: str,
        status: str,
        seconds: float,
        request_id: str | None,
        ids: tuple[str, str] | None,
        user: Any,
    ) -> str:
        known = known_parts.get((method, route, status))
        if known is None:
            # The message's start without its closing quote, up to its duration (what
            # follows needs no escaping: digits, a point, spaces, "ms"), and the fields
            # from pid to duration_ms's name.
            shown, code = shown_method(method), int(status[:3])
            known = (
                f"{quote(f'{shown} {route}')[:-1]} {code} ",
                f' ms","pid":{pid},"method":{quote(shown)},"route":{quote(route)}'
                f',"status":{code},"duration_ms":',
            )
            if len(known_parts) < MAX_ROUTES_KEPT:  # methods come from clients
                known_parts[method, route, status] = known
        second = int(created)
        if second != clock[0]:
            clock[0], clock[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        hundredths = hundredths_of_ms(seconds)
        tenths = (hundredths + 5) // 10
        tail = ""
        if request_id is not None:
            tail += f',"request_id":{quote(str(request_id))}'
        if ids:
            tail += f',"trace_id":{quote(ids[0])},"span_id":{quote(ids[1])}'
        if user is not None:
            tail += f',"user_uuid":{quote(str(user))}'  # a UUID
        return (
            f'{{"time":"{clock[1]}.{_THREE_DIGITS[int((created - second) * 1000)]}Z{head}'
            f"{known[0]}{tenths // 10}.{tenths % 10}{known[1]}"
            f"{hundredths // 100}.{_THREE_DIGITS[hundredths % 100][1:]}{tail}}}\n"
        )

    return line


_THREE_DIGITS = [f"{n:03d}" for n in range(1000)]  # 7 as "007": a table, not a format spec
MAX_ROUTES_KEPT = 256  # (method, route, status) whose escaped text a writer keeps


def writes_json_to_stdout() -> bool:
    return _json_stdout is not None


REQUEST_LOGGER = "cruddur.request"
_json_stdout: int | None = None  # stdout's descriptor, when our JSON handler writes there


def configure(settings: TelemetrySettings, *, dev: bool = False, queued: bool = False) -> None:
    """Route the root logger to stdout in the chosen format, once per process.

    A process whose root logger already has a handler (pytest's, an embedding program's)
    keeps it: only the level is set. queued: written from a thread of their own, the
    caller only queues (a server worker, whose requests must not wait on stdout:
    log_queue.py).
    """
    global _configured, _json_stdout
    root = logging.getLogger()
    root.setLevel(settings.log_level.upper())
    if _configured or root.handlers:
        return
    text = settings.log_format == "text" or (dev and not settings.log_format_given)
    fd = None if text else _descriptor(sys.stdout)
    handler: logging.Handler
    if fd is None:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(TextFormatter() if text else JsonFormatter())
    else:
        handler = WholeLines(fd)
    # What clients send: a malformed tracestate or baggage header made the propagators
    # warn once a request, quoting it (8 kB of it): a client could fill the log.
    for name in _CLIENT_HEADER_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if settings.secrets:
        handler.addFilter(Redactor(settings.secrets))
    if queued:
        from cruddur.telemetry.log_queue import QueuedRecords

        root.addHandler(QueuedRecords(handler, current_trace_ids))
    else:
        root.addHandler(handler)
    _configured = True
    _json_stdout = fd


_CLIENT_HEADER_LOGGERS = (
    "opentelemetry.trace.span",
    "opentelemetry.trace.propagation.tracecontext",
    "opentelemetry.baggage.propagation",
)


def _descriptor(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor
        return None


class WholeLines(logging.Handler):
    """JSON records straight to stdout's descriptor, each one os.write of one line of at
    most PIPE_BUF bytes: the server's workers share stdout, and through sys.stdout's
    buffer a record longer than that (a traceback, a message quoting a client) went out
    in pieces that another worker's lines landed between."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.setFormatter(JsonFormatter(max_bytes=PIPE_BUF - 1))

    def handle(self, record: logging.LogRecord) -> bool:
        # Without the handler's lock: each record is one write of whole lines, which the
        # kernel keeps whole. Held through a write that blocked (stdout's reader stalled),
        # the lock held logging's shutdown at exit too, and a stopping worker never ended.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"{self.format(record)}\n".encode(errors="surrogatepass")
            sys.stdout.flush()  # what print() left in its buffer goes first
            while line:  # one write for a pipe; a file may take less at a time
                line = line[os.write(self.fd, line) :]
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def redact_stderr(secrets: Sequence[str]) -> None:
    """For a CLI command that traces (or the Lambda's code run outside Lambda): its
    warnings, the exporter's among them, on stderr as Python's last-resort handler writes
    them (the message alone, warnings and up), through a Redactor. Only when the root
    logger has no handler yet (a test's, an embedding program's, this one's)."""
    root = logging.getLogger()
    if root.handlers or not secrets:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.addFilter(Redactor(secrets))
    root.addHandler(handler)
