"""Delete cruds that expired long ago: no one can read them, and they cost storage,
vacuum and index size every day they stay.

A crud is purged once it expired more than a grace period ago (default 1 day), with its
replies (which expire with it). The cutoff is fixed when the purge starts, from the
server's clock, so a crud that expires while the purge runs is never touched. Rows go in
batches of `batch_size`, each its own short transaction, so no lock is held long and the
API keeps serving (README "Measured" has the feed's p99 during a purge). Two purges at
once take turns batch by batch (purge_lock.sql).

Each statement runs with JIT compilation off: the every-depth reply check makes the
planner's cost estimates huge, far above `jit_above_cost`, and compiling a batch's plan
took 3.5 times as long as running it (271 against 78 ms for 5,000 rows).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cruddur.config import PURGE_BATCH_DEFAULT, PURGE_NICE_RATIO_DEFAULT
from cruddur.db import Db, template
from cruddur.ops import interrupts

DEFAULT_GRACE = timedelta(days=1)
DEFAULT_BATCH_SIZE = PURGE_BATCH_DEFAULT  # in config, for `db purge-expired --help`
# For the statement's transaction only (a pooler's next client never sees it).
WITHOUT_JIT = "SET LOCAL jit = off"


@dataclass(frozen=True)
class Counts:
    cruds: int = 0
    replies: int = 0

    @property
    def total(self) -> int:
        return self.cruds + self.replies

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.cruds + other.cruds, self.replies + other.replies)


@dataclass(frozen=True)
class Purged:
    cutoff: datetime
    deleted: Counts
    batches: int
    seconds: float


def cutoff(db: Db, grace: timedelta = DEFAULT_GRACE) -> datetime:
    """The server's now less `grace`: activities that expired before it go."""
    return db.query_value(template("activities", "purge_cutoff"), {"grace": grace})


def one_row_without_jit(db: Db, sql: str, params: dict[str, Any]) -> tuple[Any, ...]:
    """The one row `sql` returns, run in a transaction of its own with JIT off."""
    with db.connection() as conn, conn.transaction():
        conn.execute(WITHOUT_JIT)
        return conn.execute(sql, params).fetchone()


def one_batch(
    db: Db, params: dict[str, Any], before_commit: Callable[[], None] | None = None
) -> Counts:
    """One batch of the purge, in its own transaction, after any other purge's batch
    (purge_lock.sql: two at once deadlocked). `before_commit`: called as the batch is
    about to commit (interrupts.held's hold)."""
    with db.connection() as conn, conn.transaction():
        conn.execute(WITHOUT_JIT)
        conn.execute(template("activities", "purge_lock"))
        cruds, replies = conn.execute(template("activities", "purge_batch"), params).fetchone()
        if before_commit is not None:
            before_commit()
        return Counts(cruds, replies)


def expired(db: Db, before: datetime) -> Counts:
    """How many cruds and replies expired before `before` (what a purge would delete)."""
    cruds, replies = one_row_without_jit(
        db, template("activities", "purge_count"), {"cutoff": before}
    )
    return Counts(cruds, replies)


def purge(
    db: Db,
    before: datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    nice_ratio: float = PURGE_NICE_RATIO_DEFAULT,
    progress: Callable[[Counts], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Purged:
    """Delete, batch after batch, what expired before `before`, until nothing is left.

    After each batch but the last, rest `nice_ratio` times as long as it took: the
    purge then has the database's attention only 1 / (1 + nice_ratio) of its time (0:
    no rest). `progress` is called after each batch with what it deleted.
    """
    if batch_size < 1:
        raise ValueError("the batch size must be at least 1")
    if nice_ratio < 0:
        raise ValueError("the nice ratio must be 0 or more")
    started = time.perf_counter()
    total, batches = Counts(), 0
    params = {"cutoff": before, "batch_size": batch_size}
    while True:
        batch_started = time.perf_counter()
        # Ctrl-C during the COMMIT waits for it and for `progress`: what was reported
        # is exactly what was deleted (an interrupted batch before it rolls back).
        with interrupts.held() as hold:
            batch = one_batch(db, params, before_commit=hold)
            if batch.total == 0:
                break
            total, batches = total + batch, batches + 1
            if progress is not None:
                progress(batch)
        if batch.total >= batch_size:  # a full batch: more may follow (a short one was last)
            sleep(nice_ratio * (time.perf_counter() - batch_started))
    return Purged(before, total, batches, time.perf_counter() - started)
