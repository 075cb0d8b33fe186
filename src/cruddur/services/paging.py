"""Keyset paging for feeds: a page size and a cursor naming the last row already seen.

The cursor is `<microseconds since the epoch>_<uuid>` of that row: short, URL-safe and
exact (a timestamptz has microsecond precision). It is opaque to clients; they copy it
from the `Link: <…>; rel="next"` header or the `X-Next-Cursor` header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"^(-?\d{1,17})_([0-9a-fA-F-]{32,36})$")


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
    def decode(cls, text: str) -> Cursor:
        match = _CURSOR.match(text)
        if match is None:
            raise BadPageRequest("before", "before must be a cursor from a previous page")
        try:
            created_at = _EPOCH + timedelta(microseconds=int(match.group(1)))
            return cls(created_at, UUID(match.group(2)))
        except (ValueError, OverflowError):
            raise BadPageRequest("before", "before must be a cursor from a previous page") from None


# Sorts after every real row: the first page starts here.
START = Cursor(datetime.max.replace(tzinfo=UTC), UUID(int=(1 << 128) - 1))


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    before: Cursor = START

    @classmethod
    def from_query(cls, limit: str | None, before: str | None) -> PageRequest:
        """From the query string's `limit` and `before`, checked."""
        size = DEFAULT_LIMIT
        if limit is not None:
            if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
                raise BadPageRequest("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
            size = int(limit)
        return cls(size, Cursor.decode(before) if before else START)

    def params(self) -> dict[str, object]:
        return {
            "limit": self.limit,
            "before_created_at": self.before.created_at,
            "before_uuid": self.before.uuid,
        }


@dataclass(frozen=True)
class Page:
    body: str  # the JSON array, as PostgreSQL built it
    next: Cursor | None  # where the next page starts; None on the last page
