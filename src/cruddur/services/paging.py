"""Keyset paging: a page size and a cursor naming the last row already seen.

Feeds read newest first and continue `before` a cursor; a crud's replies read oldest
first and continue `after` one.

The cursor is `<microseconds since the epoch>_<uuid>` of that row: short, URL-safe and
exact (a timestamptz has microsecond precision). It is opaque to clients; they copy it
from the `Link: <…>; rel="next"` header or the `X-Next-Cursor` header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from cruddur.services.validation import UUID_PATTERN

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
REPLIES_DEFAULT_LIMIT = MAX_LIMIT  # a crud's replies: as many as a page may hold

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _whole_numbers_up_to(highest: int) -> str:
    """A regular expression matching the whole numbers 0 to `highest`, written without
    leading zeros (as str(int) writes them)."""
    text = str(highest)
    width = len(text)
    choices = [f"[0-{text}]" if width == 1 else f"0|[1-9][0-9]{{0,{width - 2}}}"]
    if width == 1:
        return choices[0]
    # Then the numbers of `width` digits: those that first fall below `highest` at
    # digit `at`, any digits after it; and `highest` itself.
    for at in range(width):
        lowest, below = (1 if at == 0 else 0), int(text[at]) - 1
        if below < lowest:
            continue
        digit = str(lowest) if below == lowest else f"[{lowest}-{below}]"
        rest = width - at - 1
        after = "" if rest == 0 else "[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"
        choices.append(f"{text[:at]}{digit}{after}")
    choices.append(text)
    return "|".join(choices)


# Every time the server reads back is a datetime, years 1 to 9999 (psycopg refuses the
# rest): from -62135596800000000 to 253402300799999999 microseconds. (16 digits ended at
# 2286 and 1653, and a crud imported beyond them left its feed's next page refused; any
# 18 digits matched, and a schema-valid cursor beyond 9999 was refused, which schemathesis
# found with other seeds.) [0-9], since \d would take any script's digits. openapi.yaml
# states the same pattern.
_EARLIEST_MICROS, _LATEST_MICROS = -62135596800000000, 253402300799999999
CURSOR_PATTERN = (
    f"^(?:{_whole_numbers_up_to(_LATEST_MICROS)}|-(?:{_whole_numbers_up_to(-_EARLIEST_MICROS)}))"
    f"_{UUID_PATTERN}$"
)
_CURSOR = re.compile(CURSOR_PATTERN)


class BadPageRequest(ValueError):
    """A limit or cursor the client sent is malformed; the message says how."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    uuid: UUID

    def encode(self) -> str:
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}_{self.uuid}"

    @classmethod
    def decode(cls, text: str, field: str = "before") -> Cursor:
        """The cursor in `text`, the query parameter `field`'s value."""
        problem = BadPageRequest(field, f"{field} must be a cursor from a previous page")
        if _CURSOR.fullmatch(text) is None:
            raise problem
        micros, _, uuid_text = text.partition("_")
        try:
            created_at = _EPOCH + timedelta(microseconds=int(micros))
        except OverflowError:  # before year 1 or after 9999: no row's cursor
            raise problem from None
        return cls(created_at, UUID(uuid_text))


# Sorts after every real row: a newest-first page starts here.
START = Cursor(datetime.max.replace(tzinfo=UTC), UUID(int=(1 << 128) - 1))
# Sorts before every real row: an oldest-first page starts here.
FIRST = Cursor(datetime.min.replace(tzinfo=UTC), UUID(int=0))


def _limit(text: str | None, default: int) -> int:
    if text is None:
        return default
    # isascii: "²".isdigit() is True, but int("²") fails. Leading zeros ("05") are taken,
    # and a number too long to be in range is refused before int() sees it: int() raises
    # on over 4,300 digits (zeros included), which would be a 500.
    digits = text.lstrip("0")
    well_formed = text.isascii() and text.isdigit() and len(digits) <= len(str(MAX_LIMIT))
    if not well_formed or not 1 <= int(digits or 0) <= MAX_LIMIT:
        raise BadPageRequest("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(digits)


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    before: Cursor = START

    @classmethod
    def from_query(cls, limit: str | None, before: str | None) -> PageRequest:
        """From the query string's `limit` and `before`, checked."""
        return cls(_limit(limit, DEFAULT_LIMIT), START if before is None else Cursor.decode(before))

    def params(self) -> dict[str, object]:
        return {
            "limit": self.limit,
            "before_created_at": self.before.created_at,
            "before_uuid": self.before.uuid,
        }


@dataclass(frozen=True)
class RepliesRequest:
    """A page of one crud's replies, oldest first, after a cursor."""

    limit: int = REPLIES_DEFAULT_LIMIT
    after: Cursor = FIRST

    @classmethod
    def from_query(cls, limit: str | None, after: str | None) -> RepliesRequest:
        """From the query string's `limit` and `after`, checked."""
        size = _limit(limit, REPLIES_DEFAULT_LIMIT)
        return cls(size, FIRST if after is None else Cursor.decode(after, "after"))

    def params(self) -> dict[str, object]:
        return {
            "replies_limit": self.limit,
            "after_created_at": self.after.created_at,
            "after_uuid": self.after.uuid,
        }


@dataclass(frozen=True)
class Page:
    body: bytes  # the JSON (a feed's array, a crud with its replies), as PostgreSQL built it
    next: Cursor | None  # where the next page starts; None on the last page
