"""granian's own log lines ("Starting granian", "Shutting down granian", a worker's
start and stop), written to stdout from a thread of their own.

granian logs them through a StreamHandler on sys.stdout. With stdout's reader stalled
(a full pipe: the awslogs driver in blocking mode, a `| less` left open), the main
process blocked on its "Shutting down granian" line at SIGTERM and never stopped its
workers: the server ended only when the reader read again (118 s in a review's run).
Here a line is queued (at most MAX_QUEUED, then dropped) and a daemon thread writes it;
a process that ends waits EXIT_WRITE_SECONDS at most for what is queued.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import queue
import signal
import sys
import threading
from typing import IO

from cruddur.telemetry.log_queue import EXIT_WRITE_SECONDS

MAX_QUEUED = 1_000
STOPS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class QueuedStdout(logging.Handler):
    """A handler for granian's logging config (its `class`), in place of
    logging.StreamHandler: the same `stream` argument, never blocking the caller."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        # As StreamHandler takes it: no stream (stdout closed, `>&-`) is stderr; neither
        # open, the lines have nowhere to go.
        stream = stream or sys.stderr
        self.fd = stream.fileno() if stream is not None else None
        self._pid = 0  # the process whose thread writes; a forked worker starts its own
        self._lines: queue.Queue[bytes] = queue.Queue(MAX_QUEUED)
        self._starting = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if self.fd is None:
            return
        try:
            line = f"{self.format(record)}\n".encode(errors="replace")
            if self._pid != os.getpid():
                self._start(self.fd)
            self._lines.put_nowait(line)
        except queue.Full:
            pass  # stdout has taken nothing for MAX_QUEUED lines: this one is dropped
        except Exception:
            self.handleError(record)

    def _start(self, fd: int) -> None:
        with self._starting:
            if self._pid == os.getpid():
                return
            # A forked child has the parent's queue, and none of its threads: its own.
            self._lines = queue.Queue(MAX_QUEUED)
            threading.Thread(
                target=self._write_on, args=(self._lines, fd), name="granian-lines", daemon=True
            ).start()
            self._pid = os.getpid()
            multiprocessing.util.Finalize(self, self._drain, exitpriority=0)

    @staticmethod
    def _write_on(lines: queue.Queue[bytes], fd: int) -> None:
        # The stops go to the main thread, not this one: delivered here, the main thread
        # waiting on granian's event was never woken to run its handler, and one SIGTERM
        # in five or so left the server running (tests/test_serve_hardening.py).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
        while True:
            line = lines.get()
            try:
                while line:
                    line = line[os.write(fd, line) :]
            except OSError:
                pass  # stdout closed or its reader gone: nowhere to write
            finally:
                lines.task_done()

    def _drain(self) -> None:
        """At exit: what is queued written, waited for EXIT_WRITE_SECONDS at most."""
        done = threading.Event()
        lines = self._lines

        def wait() -> None:
            lines.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        done.wait(EXIT_WRITE_SECONDS)

    def handle(self, record: logging.LogRecord) -> bool:
        # No lock: emit only queues (logging's shutdown at exit takes each handler's lock).
        if not self.filter(record):
            return False
        self.emit(record)
        return True


def install() -> None:
    """granian's default logging config, its handlers made QueuedStdout (a --log-config
    of the user's still replaces them)."""
    from granian import log

    for handler in log.LOGGING_CONFIG["handlers"].values():
        if handler.get("class") == "logging.StreamHandler":
            handler["class"] = f"{__name__}.QueuedStdout"
