"""Request bodies: read whole within the size limit, however framed, and parsed as JSON.

Every endpoint that takes a body reads it here, so a body over the limit is a 413 and
one that cannot be parsed is a 400, whatever the reason.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from cruddur.api.errors import ApiError


class UnreadableJson(ValueError):
    """The body is not JSON text this API can read; the message says why."""


def require_json() -> None:
    """415 unless the body says it is JSON. A page on another site can send a form or
    text/plain POST without asking the browser first (no CORS preflight); it cannot
    send application/json that way."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")


BODY_READERS_KEY = "cruddur.body_readers"  # app.extensions: this worker's BodyReaders
# How long a request waits for a reading slot before its 503: far longer than a whole
# body takes to arrive from a client that sends it, far shorter than any client waits.
SLOT_WAIT_SECONDS = 0.1
RETRY_AFTER_SECONDS = "1"


class BodyReaders:
    """How many of a worker's threads may be reading request bodies at once: all but one.

    The server hands a request to a thread once its headers are in, and reading its body
    then blocks that thread until the last byte arrives; no server setting bounds that
    wait. A signed-in client that sends headers and then a body a byte at a time (or
    never its last byte) could otherwise hold every thread of a worker, and reads,
    health checks and everyone's writes would wait behind it. With this bound, the last
    thread stays free for requests without a body; a body that finds no free slot in
    SLOT_WAIT_SECONDS gets a 503 with Retry-After (never read, nothing stored)."""

    def __init__(self, threads: int) -> None:
        self.slots = max(1, threads - 1)
        self._free = threading.BoundedSemaphore(self.slots)

    def read(self) -> bytes:
        if not self._free.acquire(timeout=SLOT_WAIT_SECONDS):
            raise ApiError(
                503,
                "busy",
                "too many request bodies are arriving at once; send it again shortly",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        try:
            return request.get_data()  # 413 when Content-Length says it is too large
        finally:
            self._free.release()


def body_bytes() -> bytes:
    """The whole request body, or 413 when it is over MAX_CONTENT_LENGTH."""
    readers = current_app.extensions.get(BODY_READERS_KEY)
    raw = readers.read() if readers is not None else request.get_data()
    limit = request.max_content_length
    # Without a Content-Length (chunked), werkzeug stops reading at the limit and returns
    # what it has: one byte more on the server's own stream tells whether the body went on.
    if (
        request.content_length is None
        and limit is not None
        and len(raw) >= limit
        and request.environ["wsgi.input"].read(1)
    ):
        raise RequestEntityTooLarge()
    return raw


def json_body() -> Any:
    """The body parsed as JSON; UnreadableJson when it cannot be, 413 when too large."""
    raw = body_bytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UnreadableJson("the body is not UTF-8 text") from None
    except RecursionError:  # not a ValueError: json gives up on deep nesting this way
        raise UnreadableJson("the body is nested too deeply") from None
    except ValueError as exc:
        raise UnreadableJson(f"the body is not valid JSON: {exc}") from None
