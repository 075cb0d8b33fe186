"""Ctrl-C held off across a COMMIT and the report of it, so that a bulk verb stopped by
SIGINT can say exactly what it kept.

Before the hold, Ctrl-C stops at once: psycopg cancels the statement under way and its
transaction rolls back. A COMMIT cannot be cancelled, though: interrupted while waiting
for one, the program could not tell whether it was kept. Held, the COMMIT and the count
that reports it happen both or neither. A second Ctrl-C during the hold is the user's
to give: it stops the wait (psycopg cancels the COMMIT) as CommitCut, after which
nobody can say whether the COMMIT was kept; a COMMIT can run for long (deferred
triggers, a synchronous standby that is away).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class CommitCut(KeyboardInterrupt):
    """Ctrl-C twice while a COMMIT was under way: it may or may not have been kept."""


WAITING = (
    "waiting for the commit under way; Ctrl-C again stops it, "
    "and then whether it was kept is unknown"
)


@contextmanager
def held() -> Iterator[Callable[[], None]]:
    """Yields hold(): from that call to the block's end, a SIGINT waits, then acts as it
    would have (KeyboardInterrupt). An error leaving the block goes on as it is."""
    caught: list[int] = []
    previous: list[Any] = []

    def hold() -> None:
        # Only the main thread may set a handler; SIGINT's Python handler runs there.
        if previous or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is None:  # set outside Python: left alone
            return
        previous.append(signal.signal(signal.SIGINT, on_sigint))

    def on_sigint(signum: int, _frame: Any) -> None:
        if caught:  # the second: stop waiting
            signal.signal(signal.SIGINT, previous[0])
            raise CommitCut
        caught.append(signum)
        print(f"! {WAITING}", file=sys.stderr, flush=True)

    try:
        yield hold
    except BaseException:
        if previous:
            signal.signal(signal.SIGINT, previous[0])
        raise
    if previous:
        signal.signal(signal.SIGINT, previous[0])
        if caught:
            signal.raise_signal(signal.SIGINT)  # the handler runs now: KeyboardInterrupt
