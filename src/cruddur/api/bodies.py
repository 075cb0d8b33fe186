"""Request bodies: read whole within the size limit, however framed, and parsed as JSON.

Every endpoint that takes a body reads it here, so a body over the limit is a 413 and
one that cannot be parsed is a 400, whatever the reason.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request
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


def body_bytes() -> bytes:
    """The whole request body, or 413 when it is over MAX_CONTENT_LENGTH."""
    raw = request.get_data()  # 413 when Content-Length says it is too large
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
