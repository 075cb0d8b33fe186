"""A server worker's log records, written from a thread of their own.

A record logged in a request's thread (a refused token, a 500's traceback) went straight
to stdout. With stdout's reader stalled (a full pipe), that write blocked while holding
the handler's lock, every other thread that logged waited on the lock, and a few bad
tokens left no thread to answer anyone, /api/health included. Here a request's thread
only queues the record; past MAX_QUEUED records waiting, a record is dropped and counted,
and a note says how many once writing resumes (as request lines are: requests.py).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import logging.handlers
import multiprocessing.util
import queue
import threading
import time
from collections.abc import Callable

# Records waiting for stdout at most, then dropped and counted. Few: one with an exception
# holds its traceback (frames and their locals) until written.
MAX_QUEUED = 1_000
# What a stopping process waits, at most, for each of its writers to stdout (these
# records', the request lines', granian's own lines): with stdout's reader stalled, an
# unbounded wait kept it from ending at all.
EXIT_WRITE_SECONDS = 1.0


class QueuedRecords(logging.handlers.QueueHandler):
    """On the root logger in place of `handler`, which a thread of its own now calls.

    What depends on the moment or the caller's thread is fixed as the record is queued:
    its message with its arguments, and the current span's ids (`ids`); formatting, the
    traceback's text and the write happen in the writer's thread."""

    def __init__(self, handler: logging.Handler, ids: Callable[[], dict[str, str]]) -> None:
        super().__init__(queue.Queue(MAX_QUEUED))
        self.ids = ids
        self.dropped = 0  # since the last note; changed under _dropping
        self._dropping = threading.Lock()
        self._stopping = False
        self.listener = logging.handlers.QueueListener(
            self.queue, _Noting(handler, self), respect_handler_level=True
        )
        self.listener.start()
        # Written at exit (a worker granian stops): what is queued, then the thread ends;
        # after every other finalizer (the spans' last flush, 100, and what its exporter
        # logs; the metrics', 90), so nothing they log is queued after the writer stopped.
        multiprocessing.util.Finalize(self, self._stop, exitpriority=1)

    def _stop(self) -> None:
        """The listener's stop (what is queued written, then its thread ends), waited for
        at most EXIT_WRITE_SECONDS: with stdout's reader stalled it waited for ever, and
        the worker never ended. Once only."""
        if self._stopping:
            return
        self._stopping = True
        stopper = threading.Thread(target=self._stop_listener, daemon=True)
        stopper.start()
        stopper.join(EXIT_WRITE_SECONDS)

    def _stop_listener(self) -> None:
        # A queue full after a burst, its writer busy, has room again shortly: waited
        # for (the stop's own mark needs a place), within the join's bound.
        deadline = time.monotonic() + EXIT_WRITE_SECONDS
        while self.queue.full() and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
        with contextlib.suppress(queue.Full):  # still full: its writer is stuck
            self.listener.stop()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg, record.args = record.getMessage(), None
        if "trace_id" not in record.__dict__:
            for key, value in self.ids().items():
                setattr(record, key, value)
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._dropping:
                self.dropped += 1

    def take_dropped(self) -> int:
        with self._dropping:
            dropped, self.dropped = self.dropped, 0
        return dropped


class _Noting(logging.Handler):
    """The real handler, preceded, once records were dropped, by a note saying how many."""

    def __init__(self, handler: logging.Handler, queued: QueuedRecords) -> None:
        super().__init__(handler.level)
        self.handler = handler
        self.queued = queued

    def handle(self, record: logging.LogRecord) -> bool:
        dropped = self.queued.take_dropped()
        if dropped:
            note = logging.makeLogRecord(
                {
                    "name": "cruddur.telemetry",
                    "levelno": logging.WARNING,
                    "levelname": "WARNING",
                    "msg": f"log: {dropped} records dropped since the last such note: stdout "
                    "took no more (its reader stalled)",
                    "dropped": dropped,
                }
            )
            self.handler.handle(note)
        return bool(self.handler.handle(record))

    def emit(self, record: logging.LogRecord) -> None:  # handle() does it all
        self.handler.emit(record)
