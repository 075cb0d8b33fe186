"""COPY's binary format for the fake rows (cruddur.ops.fake_rows).

Binary, not text: no timestamps or uuids to print here and parse again in the server,
and nothing to escape (bench/fake_copy.py measures the ways side by side).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from cruddur.ops.fake_rows import FakeActivity, FakeUser

PG_EPOCH_MS = 946_684_800_000  # 2000-01-01, where binary timestamps count from
# The columns, in the order the encoders write them.
USER_COLUMNS = "uuid, display_name, handle, email, cognito_user_id, created_at"
ACTIVITY_COLUMNS = (
    "uuid, user_uuid, message, replies_count, reposts_count, likes_count,"
    " reply_to_activity_uuid, expires_at, created_at"
)


BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
BINARY_TRAILER = b"\xff\xff"
_NULL = struct.pack(">i", -1)
_uuid_field = struct.Struct(">i16s")
_activity_head = struct.Struct(">hi16si16si")  # ends with the message's length
_activity_counts = struct.Struct(">iiiiii")
_activity_times = struct.Struct(">iqiq")
_users_head = struct.Struct(">hi16s")
_time_field = struct.Struct(">iq")
_length = struct.Struct(">i")


def _binary_time(ms: int) -> int:
    return (ms - PG_EPOCH_MS) * 1000  # microseconds since 2000-01-01


def _binary_text(value: str) -> bytes:
    data = value.encode()
    return _length.pack(len(data)) + data


def binary_users(rows: Sequence[FakeUser]) -> bytes:
    parts = []
    for r in rows:
        parts.append(_users_head.pack(6, 16, r.uuid))
        parts.append(_binary_text(r.display_name))
        parts.append(_binary_text(r.handle))
        parts.append(_binary_text(r.email))
        parts.append(_binary_text(r.cognito_user_id))
        parts.append(_time_field.pack(8, _binary_time(r.created_ms)))
    return b"".join(parts)


def binary_activities(rows: Sequence[FakeActivity]) -> bytes:
    parts: list[bytes] = []
    add = parts.append
    for uuid, user, message, replies, reposts, likes, parent, expires, created in rows:
        text = message.encode()
        add(_activity_head.pack(9, 16, uuid, 16, user, len(text)))
        add(text)
        add(_activity_counts.pack(4, replies, 4, reposts, 4, likes))
        add(_uuid_field.pack(16, parent) if parent else _NULL)
        add(_activity_times.pack(8, _binary_time(expires), 8, _binary_time(created)))
    return b"".join(parts)
