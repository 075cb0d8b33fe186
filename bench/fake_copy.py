"""Which way of feeding COPY loads the fake activities fastest?

Each way loads the same fake rows (cruddur.ops.fake_rows) into a freshly set-up table, in
interleaved rounds (this machine is noisy, so compare within a round):

  write_row text    psycopg's copy.write_row with Python values, text format
  write_row binary  the same with copy.set_types, binary format
  text chunks       COPY text lines formatted here, written in chunks
  binary chunks     COPY binary rows packed here (what `db seed --fake` does), chunks
  binary queued     the same through QueuedLibpqWriter: a thread sends while this one packs

Usage: .venv/bin/python bench/fake_copy.py [--activities 200000] [--rounds 2]
The database is CRUDDUR_BENCH_URL's server (else the embedded one); the database
cruddur_bench_fake is dropped and recreated for every load, and dropped at the end.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from uuid import UUID

from psycopg import Connection
from psycopg.copy import QueuedLibpqWriter
from stage import bench_database, drop_database, fresh_database

from cruddur.db import Db
from cruddur.ops import fake, fake_copy, fake_rows, loading

COPY = f"COPY activities ({fake_copy.ACTIVITY_COLUMNS}) FROM STDIN"
TYPES = ["uuid", "uuid", "text", "int4", "int4", "int4", "uuid", "timestamptz", "timestamptz"]
NULL = "\\N"
ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def chunks(data: fake_rows.FakeData) -> Iterator[list[fake_rows.FakeActivity]]:
    for start in range(0, data.activities, fake.CHUNK_ROWS):
        yield data.activity_rows(start, min(start + fake.CHUNK_ROWS, data.activities))


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _as_python(row: tuple) -> tuple:
    """One generator row as the Python values write_row adapts (uuids, datetimes)."""
    uuid, user, message, replies, reposts, likes, parent, expires, created = row
    parent_uuid = UUID(bytes=parent) if parent else None
    ids = (UUID(bytes=uuid), UUID(bytes=user))
    return (*ids, message, replies, reposts, likes, parent_uuid, _time(expires), _time(created))


def write_row_text(conn: Connection, data: fake_rows.FakeData) -> None:
    with conn.cursor().copy(COPY) as copy:
        for rows in chunks(data):
            for row in rows:
                copy.write_row(_as_python(row))


def write_row_binary(conn: Connection, data: fake_rows.FakeData) -> None:
    with conn.cursor().copy(f"{COPY} (FORMAT binary)") as copy:
        copy.set_types(TYPES)
        for rows in chunks(data):
            for row in rows:
                copy.write_row(_as_python(row))


def _text_time(ms: int) -> str:
    return _time(ms).isoformat()


def text_chunks(conn: Connection, data: fake_rows.FakeData) -> None:
    with conn.cursor().copy(COPY) as copy:
        for rows in chunks(data):
            copy.write(
                "".join(
                    f"{u.hex()}\t{us.hex()}\t{m.translate(ESCAPES)}\t{rep}\t{rp}\t{lk}\t"
                    f"{p.hex() if p else NULL}\t{_text_time(e)}\t{_text_time(c)}\n"
                    for u, us, m, rep, rp, lk, p, e, c in rows
                ).encode()
            )


def binary(conn: Connection, data: fake_rows.FakeData, *, queued: bool = False) -> None:
    cur = conn.cursor()
    writer = QueuedLibpqWriter(cur) if queued else None
    with cur.copy(f"{COPY} (FORMAT binary)", writer=writer) as copy:
        copy.write(fake_copy.BINARY_HEADER)
        for rows in chunks(data):
            copy.write(fake_copy.binary_activities(rows))
        copy.write(fake_copy.BINARY_TRAILER)


WAYS: dict[str, Callable[[Connection, fake_rows.FakeData], None]] = {
    "write_row text": write_row_text,
    "write_row binary": write_row_binary,
    "text chunks": text_chunks,
    "binary chunks": binary,
    "binary queued": lambda conn, data: binary(conn, data, queued=True),
}


def run(url: str, way: str, activities: int) -> float:
    fresh_database(url, loading.SCHEMA)
    with Db(url) as db:
        data = fake_rows.FakeData(1000, activities, seed=1)
        fake.load(db, fake_rows.FakeData(1000, 0, seed=1))  # the same user uuids, no cruds
        with db.connection() as conn:
            started = time.perf_counter()
            WAYS[way](conn, data)
            return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    url = bench_database("cruddur_bench_fake")
    results: dict[str, list[float]] = {way: [] for way in WAYS}
    try:
        for _ in range(args.rounds):
            for way in WAYS:
                results[way].append(run(url, way, args.activities))
                print(f"{way:18} {results[way][-1]:6.1f} s", flush=True)
    finally:
        drop_database(url)
    print(f"\n{args.activities:,} activities, best of {args.rounds}:")
    for way, times in results.items():
        best = min(times)
        print(f"  {way:18} {best:6.1f} s  {args.activities / best / 1000:6.0f}k rows/s")


if __name__ == "__main__":
    main()
