"""The rules a new crud or reply must meet. Every failing field is reported at once
(the original kept only the last failure), with the original's error codes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from cruddur.limits import CRUD_MAX_CHARS, REPLY_MAX_CHARS, TTLS

# The rules below as openapi.yaml states them (a test holds the two together).
# A uuid is written in its canonical form; Python's UUID() alone also takes braces,
# "urn:uuid:" and bare hex, which the document does not promise.
UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUID = re.compile(UUID_PATTERN)
# What str.strip() strips, written out so that any regex engine reads it the same way.
WHITESPACE_CLASS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Characters that show nothing on their own (control characters, zero-width spaces and
# joiners, direction marks, fillers, variation selectors, interlinear annotation marks,
# the BOM, and Unicode's other default-ignorable code points, which renderers draw as
# nothing even while unassigned: U+2065, U+FFF0-FFF8): a message of only these and
# whitespace is as blank on the page as spaces are. Within the BMP, so that any engine
# reads it.
INVISIBLE_CLASS = (
    r"\x01-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"
    r"\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
)
# The same beyond the BMP: Egyptian hieroglyph format controls, U+E0000-E0FFF (tag
# characters, variation selectors 17-256 and the default-ignorable code points around
# them), shorthand format controls, musical symbol beams and ties. Not in
# MESSAGE_PATTERN: no escape for them reads the same in ECMA-262 (with or without its u
# flag) and Python, and from BMP escapes alone a pattern cannot tell them from an emoji;
# openapi.yaml names them.
INVISIBLE_BEYOND_BMP = (
    r"\U00013430-\U0001343f"
    r"\U000e0000-\U000e0fff\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
)
# Not blank, and no NUL. (Lone surrogates are refused too, but are not text a schema
# pattern can name; UTF-8 cannot carry them.)
MESSAGE_PATTERN = rf"^[^\x00]*[^\x00{WHITESPACE_CLASS}{INVISIBLE_CLASS}][^\x00]*$"
_BLANK = re.compile(f"[{WHITESPACE_CLASS}{INVISIBLE_CLASS}{INVISIBLE_BEYOND_BMP}]*")


def parse_uuid(text: str) -> UUID | None:
    """The uuid in canonical text (8-4-4-4-12 hex digits), or None."""
    return UUID(text) if _UUID.fullmatch(text) else None


@dataclass(frozen=True)
class FieldError:
    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class ValidationFailed(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(error.message for error in errors))
        self.errors = errors


# PostgreSQL text cannot hold NUL, nor can UTF-8 hold a lone surrogate (\ud800 in JSON):
# one search in C, where a generator over the characters cost a Python step each.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _message_errors(value: Any, max_chars: int) -> list[FieldError]:
    if value is None or (isinstance(value, str) and _BLANK.fullmatch(value) is not None):
        return [FieldError("message", "message_blank", "message must not be blank")]
    if not isinstance(value, str):
        return [FieldError("message", "message_not_text", "message must be a string")]
    errors = []
    if len(value) > max_chars:
        code = "message_exceed_max_chars" + ("" if max_chars == CRUD_MAX_CHARS else f"_{max_chars}")
        errors.append(
            FieldError(
                "message", code, f"message is {len(value)} characters; the most is {max_chars}"
            )
        )
    if _UNSTORABLE.search(value) is not None:
        errors.append(
            FieldError(
                "message",
                "message_invalid_characters",
                "message contains characters that cannot be stored (NUL or a lone surrogate)",
            )
        )
    return errors


def validate_crud(body: dict[str, Any]) -> tuple[str, timedelta]:
    """(message, lifetime) of a valid new crud, or ValidationFailed listing every problem."""
    errors = _message_errors(body.get("message"), CRUD_MAX_CHARS)
    ttl = body.get("ttl")
    if ttl is None or ttl == "":
        errors.append(FieldError("ttl", "ttl_blank", "ttl must be given"))
    elif not isinstance(ttl, str) or ttl not in TTLS:
        errors.append(FieldError("ttl", "ttl_unknown", f"ttl must be one of: {', '.join(TTLS)}"))
    if errors:
        raise ValidationFailed(errors)
    return body["message"], TTLS[ttl]


def validate_reply(body: dict[str, Any]) -> str:
    errors = _message_errors(body.get("message"), REPLY_MAX_CHARS)
    if errors:
        raise ValidationFailed(errors)
    return body["message"]
