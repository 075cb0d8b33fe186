"""Fake users and cruds in bulk, for benchmarks: loaded with COPY in one transaction.

The rows come from cruddur.ops.fake_rows (one seeded stream: the same seed, the same
rows), encoded by cruddur.ops.fake_copy (COPY's binary format). `replace` removes
earlier fake users (cognito_user_id FAKE-…) and their cruds first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from uuid import UUID

from psycopg import Connection

from cruddur.db import Db, template
from cruddur.errors import Problem
from cruddur.ops import interrupts
from cruddur.ops.fake_copy import (
    ACTIVITY_COLUMNS,
    BINARY_HEADER,
    BINARY_TRAILER,
    USER_COLUMNS,
    binary_activities,
    binary_users,
)
from cruddur.ops.fake_rows import FAKE_PREFIX, FakeData, FakeUser

CHUNK_ROWS = 5000  # rows per write: progress moves, memory stays small


class FakeDataClash(Problem):
    """The fake rows' ids are already in the database (an earlier run with the same seed)."""


@dataclass(frozen=True)
class Loaded:
    users: int
    activities: int
    removed_users: int
    removed_seconds: float  # deleting earlier fake rows (--replace)
    seconds: float  # writing the new ones, committing, analyzing

    @property
    def rows(self) -> int:
        return self.users + self.activities


def _chunks(rows: Iterator[FakeUser], size: int) -> Iterator[list[FakeUser]]:
    chunk: list[FakeUser] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _copy(
    conn: Connection,
    statement: str,
    chunks: Iterator[tuple[bytes, int]],
    progress: Callable[[int], None],
) -> None:
    # psycopg's plain writer: write() returns once libpq has sent the chunk, so progress
    # counts rows the server has. (QueuedLibpqWriter queues up to 128 MB ahead: progress
    # would run far ahead of the server, for no gain measured here.)
    with conn.cursor().copy(f"{statement} (FORMAT binary)") as copy:
        copy.write(BINARY_HEADER)
        for data, count in chunks:
            copy.write(data)
            progress(count)
        copy.write(BINARY_TRAILER)


class Progress:
    """What `load` reports as it goes; the CLI's progress bar has the same two methods."""

    def stage(self, what: str) -> None:
        """A new step begins: 'deleting' (earlier fake rows), 'writing', 'analyzing'."""

    def advance(self, rows: int) -> None:
        """This many more rows were written."""


def load(
    db: Db, data: FakeData, *, replace: bool = False, progress: Progress | None = None
) -> Loaded:
    """Add the fake rows in one transaction (all or nothing), then ANALYZE the tables.

    `replace` first deletes earlier fake users, and with them their cruds, in the same
    transaction: a load that fails keeps the earlier fake rows.
    """
    report = progress or Progress()
    started = time.perf_counter()
    # Ctrl-C from the "committing" stage on waits for the COMMIT (db.connection()'s end):
    # a load interrupted in that stage or a later one has kept its rows.
    with interrupts.held() as hold, db.connection() as conn:
        # One load at a time: two at once picked the same free handles (each checked
        # before the other wrote) and one ended in a bare "deadlock detected".
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('cruddur db seed --fake'))")
        removed = 0
        if replace:
            report.stage("deleting")  # earlier fake rows; short, for the bar's 80 columns
            removed = conn.execute(
                template("fake", "delete_fake_users"), {"pattern": FAKE_PREFIX + "%"}
            ).rowcount
        removed_seconds = time.perf_counter() - started
        # Until no handle is taken: a renamed one may be someone's too (anais1).
        handles = data.handles
        while handles:
            found = conn.execute(template("fake", "taken_handles"), {"handles": handles})
            taken = {row[0] for row in found}
            handles = data.rename_taken(taken) if taken else []
        first_ids = [
            UUID(bytes=data.user_ids[16 * i : 16 * i + 16]) for i in range(min(data.users, 1000))
        ]
        clashes = conn.execute(template("fake", "taken_uuids"), {"uuids": first_ids}).fetchone()
        if clashes and clashes[0]:
            raise FakeDataClash(
                "these fake users are already in the database (an earlier run with the same "
                "seed); nothing was added"
            )
        report.stage("writing")
        users = (
            (binary_users(chunk), len(chunk)) for chunk in _chunks(data.user_rows(), CHUNK_ROWS)
        )
        _copy(conn, f"COPY users ({USER_COLUMNS}) FROM STDIN", users, report.advance)
        activities = (
            (
                binary_activities(
                    data.activity_rows(start, min(start + CHUNK_ROWS, data.activities))
                ),
                min(CHUNK_ROWS, data.activities - start),
            )
            for start in range(0, data.activities, CHUNK_ROWS)
        )
        _copy(conn, f"COPY activities ({ACTIVITY_COLUMNS}) FROM STDIN", activities, report.advance)
        hold()
        report.stage("committing")
    # The planner should know the tables' new sizes before the first feed is read.
    report.stage("analyzing")
    with db.connection() as conn:
        conn.execute("ANALYZE users, activities")
    return Loaded(
        data.users,
        data.activities,
        removed,
        removed_seconds,
        time.perf_counter() - started - removed_seconds,
    )
