"""Request bodies: read whole within the size limit, however framed, and parsed as JSON.

Every endpoint that takes a body reads it here, so a body over the limit is a 413 and
one that cannot be parsed is a 400, whatever the reason.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from flask import Request, current_app, request
from werkzeug.exceptions import BadRequest, ClientDisconnected, RequestEntityTooLarge

from cruddur.api.errors import ApiError


class UnreadableJson(ValueError):
    """The body is not JSON text this API can read; the message says why."""


UTF8_CHARSETS = ("utf-8", "utf8")
# ASCII is UTF-8 too, so a body that says so is read as UTF-8, once checked to be ASCII
# (a body declared us-ascii with "é" in it was read as UTF-8 and stored).
ASCII_CHARSETS = ("us-ascii", "ascii")
READABLE_CHARSETS = UTF8_CHARSETS + ASCII_CHARSETS
# A charset parameter and its value, quoted or not. Read here, not by werkzeug, which
# drops one written with spaces around "=" (`charset = latin-1`): such a body was read as
# UTF-8.
_CHARSET_VALUE = re.compile(r';\s*charset\s*=\s*(?:"([^"]*)"|([^;]*))', re.IGNORECASE)


def named_charsets(content_type: str) -> list[str]:
    """Each charset a Content-Type names, lower case, its quotes taken off (a value with
    one quote keeps it: `charset="utf-8` names no charset this API takes)."""
    return ["".join(named).strip().lower() for named in _CHARSET_VALUE.findall(content_type)]


def require_json(req: Request | None = None) -> None:
    """415 unless the body says it is JSON. A page on another site can send a form or
    text/plain POST without asking the browser first (no CORS preflight); it cannot
    send application/json that way. `req`: the request, when the caller has it."""
    req = req or request
    # application/json itself: werkzeug's is_json also takes any application/*+json
    # (problem+json, vnd.api+json), which this API neither documents nor means.
    if req.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    named = named_charsets(req.headers.get("Content-Type", ""))
    if len(named) > 1:
        # Read by its last one, a body "charset=latin-1; charset=utf-8" was taken as UTF-8.
        raise ApiError(415, "unsupported_media_type", "name one charset, UTF-8")
    # JSON is UTF-8 (RFC 8259), and a body is read as sent: a body in another charset or
    # compressed would otherwise be read as if it were neither (a 400 "not UTF-8", or
    # another character than the one meant).
    charset = named[0] if named else "utf-8"
    if charset not in READABLE_CHARSETS:
        raise ApiError(
            415, "unsupported_media_type", f"send the body as UTF-8, not {charset[:32]!r}"
        )
    # Present but empty is not identity: the server hands a value with a byte outside
    # ASCII (`gzip\xff`) to the app as "", and such a body was read as uncompressed.
    encoding = req.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise ApiError(
            415, "unsupported_media_type", f"send the body uncompressed, not {encoding[:32]!r}"
        )
    # The server undoes chunked framing and nothing else: a body sent `gzip, chunked`
    # reached the app still compressed and was read as if it were not (RFC 9112: a
    # transfer coding the server does not know is a 501).
    transfer = req.headers.get("Transfer-Encoding", "")
    codings = [c.strip().lower() for c in transfer.split(",") if c.strip()]
    if codings and codings != ["chunked"]:
        shown = transfer[:48]
        raise ApiError(
            501, "not_implemented", f"send the body chunked or with a Content-Length, not {shown!r}"
        )


BODY_READERS_KEY = "cruddur.body_readers"  # app.extensions: this worker's BodyReaders
RETRY_AFTER_SECONDS = "1"
# A reader this long at it is a slow client, not a busy moment: when every slot is held
# by such readers, a body is refused at once. Otherwise it waits for a slot up to
# SLOT_WAIT_SECONDS (a reader of a body that has arrived may be waiting for the GIL).
SLOW_READ_SECONDS = 0.25
SLOT_WAIT_SECONDS = 0.05


class BodyReaders:
    """How many of a worker's threads may be reading request bodies at once: all but one.

    The server hands a request to a thread once its headers are in, and reading its body
    then blocks that thread until the last byte arrives; no server setting bounds that
    wait. A signed-in client that sends headers and then a body a byte at a time (or
    never its last byte) could otherwise hold every thread of a worker, and reads,
    health checks and everyone's writes would wait behind it. With this bound, the last
    thread stays free for requests without a body. A body that finds every slot held by
    slow readers gets a 503 with Retry-After at once (never read, nothing stored):
    waiting would itself hold the thread kept free. One that finds them held by readers
    that have just begun waits up to SLOT_WAIT_SECONDS for one: refusing it would turn a
    busy moment under load into 503s."""

    def __init__(self, threads: int) -> None:
        self.slots = max(1, threads - 1)
        self._freed = threading.Condition(threading.Lock())
        self._began: dict[int, float] = {}  # reading thread → when it began
        self._waiting = 0

    def read(self, read_body: Callable[[], bytes]) -> bytes:
        me = threading.get_ident()
        with self._freed:
            if len(self._began) >= self.slots:
                self._wait_for_a_slot()
            self._began[me] = time.monotonic()
        try:
            return read_body()
        finally:
            with self._freed:
                del self._began[me]
                if self._waiting:
                    self._freed.notify()

    def _wait_for_a_slot(self) -> None:  # with self._freed held
        deadline = time.monotonic() + SLOT_WAIT_SECONDS
        while len(self._began) >= self.slots:
            now = time.monotonic()
            slow = now - max(self._began.values()) > SLOW_READ_SECONDS
            if slow or now >= deadline:
                raise ApiError(
                    503,
                    "busy",
                    "too many request bodies are arriving at once; send it again shortly",
                    headers={"Retry-After": RETRY_AFTER_SECONDS},
                )
            self._waiting += 1
            try:
                self._freed.wait(deadline - now)
            finally:
                self._waiting -= 1


def body_bytes(req: Request | None = None) -> bytes:
    """The whole request body, or 413 when it is over MAX_CONTENT_LENGTH; read in one of
    the worker's body slots (BodyReaders) when the app has them."""
    # The request itself, not its proxy: each read of `request.…` is a lookup chain.
    read = functools.partial(_read_body, req or request._get_current_object())
    readers = current_app.extensions.get(BODY_READERS_KEY)
    return readers.read(read) if readers is not None else read()


def _read_body(req: Request) -> bytes:
    environ = req.environ
    limit = req.max_content_length
    declared = declared_length(environ)
    if declared is not None:
        # The common case, a plain Content-Length: read that many bytes from the server's
        # stream, as werkzeug would (without its stream wrappers, a third of a create's
        # body handling).
        return read_declared(environ["wsgi.input"], declared, limit)
    try:
        raw = req.get_data()  # 413 when Content-Length says it is too large
    except Exception as exc:
        # The server's stream could not undo the framing: gunicorn raises its own
        # InvalidChunkSize or ChunkMissingTerminator (ParseExceptions, not OSErrors) for
        # a malformed chunked body, which ended as a 500 with a traceback.
        if not isinstance(exc, OSError) and not type(exc).__module__.startswith("gunicorn."):
            raise
        raise BadRequest("the body's chunked framing is malformed") from None
    # Without a Content-Length (chunked), werkzeug stops reading at the limit and returns
    # what it has: one byte more on the server's own stream tells whether the body went on
    # (over the limit is a 413 however the body is framed).
    if (
        req.content_length is None
        and limit is not None
        and len(raw) >= limit
        and environ["wsgi.input"].read(1)
    ):
        raise RequestEntityTooLarge()
    if req.content_length is None and environ.get("SERVER_SOFTWARE") == GRANIAN:
        # granian's stream ends a chunked body cut off on the way (the client closed or
        # half-closed its socket before the last chunk) as it ends a whole one: no error,
        # what arrived is the body. A write sent so was stored and acknowledged, or
        # stored unanswered, and a retry stored it again. Without a length to check it
        # against, such a body is refused (gunicorn's stream raises, a 400 below).
        raise ApiError(
            411,
            "length_required",
            "send the body with a Content-Length: without one, this server cannot tell a "
            "body cut off on the way from a whole one",
        )
    return raw


GRANIAN = "Granian"  # its SERVER_SOFTWARE in the environ


# More digits than any body this server takes (and fewer than int()'s 4,300-digit limit).
_TOO_MANY_DIGITS = 18


def declared_length(environ: dict[str, Any]) -> int | None:
    """The body's length when a plain Content-Length gives it (not chunked), else None.
    A length of more digits than any limit reads as 10**18: too large, whatever it is."""
    declared = environ.get("CONTENT_LENGTH")
    if (
        declared
        and declared.isdigit()
        and declared.isascii()  # isdigit() alone admits digits int() would refuse
        and "HTTP_TRANSFER_ENCODING" not in environ
    ):
        # HTTP allows leading zeros and the server passes them on: 5,000 of them and a
        # 29 are 29. int() refuses a string of over 4,300 digits (a ValueError, a 500).
        digits = declared.lstrip("0")
        return int(digits or "0") if len(digits) <= _TOO_MANY_DIGITS else 10**_TOO_MANY_DIGITS
    return None


def read_declared(stream: BinaryIO, length: int, limit: int | None) -> bytes:
    """`length` bytes of the body, 413 when that is over `limit`, 400 when the client
    stops sending before the last one (werkzeug's ClientDisconnected)."""
    if limit is not None and length > limit:
        raise RequestEntityTooLarge()
    raw = stream.read(length) if length else b""
    while len(raw) < length:  # a server may hand a body over in parts
        more = stream.read(length - len(raw))
        if not more:
            raise ClientDisconnected()
        raw += more
    return raw


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _float(text: str) -> float:
    # int() refuses more digits than this (4,300 unless changed); float() takes any
    # number of them, so a long decimal passed where as many without the point did not.
    # Its digits counted as int() counts them: not the sign, the point or the exponent's e.
    limit = sys.get_int_max_str_digits()
    if limit and len(text) > limit and len(text) - sum(map(text.count, "-+.eE")) > limit:
        raise ValueError(f"Exceeds the limit ({limit} digits) for a number")
    return float(text)


# Python's json reads NaN, Infinity and -Infinity, which JSON (RFC 8259) does not have.
JSON_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_float)


def _declared_ascii(req: Request) -> bool:
    named = named_charsets(req.headers.get("Content-Type", ""))
    return bool(named) and named[0] in ASCII_CHARSETS


def json_body(req: Request | None = None) -> Any:
    """The body parsed as JSON; UnreadableJson when it cannot be, 413 when too large."""
    raw = body_bytes(req)
    if not raw.isascii() and _declared_ascii(req or request):
        raise UnreadableJson("the body is not ASCII, as its charset says")
    try:
        return JSON_DECODER.decode(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UnreadableJson("the body is not UTF-8 text") from None
    except RecursionError:  # not a ValueError: json gives up on deep nesting this way
        raise UnreadableJson("the body is nested too deeply") from None
    except ValueError as exc:
        if str(exc).startswith("Exceeds the limit"):  # int()'s (names a Python call), _float's
            raise UnreadableJson("the body has a number with too many digits") from None
        raise UnreadableJson(f"the body is not valid JSON: {exc}") from None
