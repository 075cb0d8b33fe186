"""What happens when a request is answered: its log line and its metrics.

`observer()` returns the function the WSGI edge (api/edge.py) calls with each finished
request, or None when neither the request log (level info or lower) nor metrics are on:
then the edge does nothing more than before.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flask import Request
from werkzeug.routing import Rule

from cruddur.telemetry import logs, metrics
from cruddur.telemetry.log_queue import EXIT_WRITE_SECONDS
from cruddur.telemetry.tracing import TRACE_IDS_KEY

USER_UUID_KEY = "cruddur.user_uuid"  # in the WSGI environ, set by api.auth once verified
UNMATCHED = "unmatched"  # the route of a request no URL rule took (404, 405)

ROUTE_KEY = "cruddur.route"  # in the WSGI environ: the URL rule's template, once matched

Observer = Callable[[dict[str, Any], str, float], None]


class _NotedRule:
    """`url_rule` of RememberedRequest: setting it also leaves the rule's template in the
    environ. It has no __get__, so Python reads the request's own attribute: Flask reads
    url_rule 7 times a request, and a property made each read a Python call."""

    def __set__(self, request: Request, rule: Rule | None) -> None:
        request.__dict__["url_rule"] = rule
        if rule is not None:
            request.environ[ROUTE_KEY] = rule.rule


class RememberedRequest(Request):
    """Flask's request, leaving the route template it matched in the WSGI environ, where
    the edge reads it once Flask is done. (Keeping the request itself there would make a
    reference cycle per request, request to environ and back, that only the cyclic
    collector frees.)"""

    url_rule = _NotedRule()  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__["url_rule"] = None  # Flask's default, until a rule matches


FLUSH_EVERY = 0.1  # seconds between takings of the finished requests, counted then
# Counted requests waiting for stdout at most: while stdout blocks (a stalled reader of a
# full pipe) the queue would grow with every request until the worker was killed. Past
# it a request's line is dropped (it is counted all the same), and a note says how many
# once writing resumes. Full, it holds 27 MB (request ids alone) to 56 MB (trace ids and
# users too), measured with tracemalloc.
MAX_QUEUED = 100_000


class Recorder:
    """Takes each finished request for its log line and metrics: a thread of its own
    counts them every FLUSH_EVERY seconds and hands their lines to another, which writes
    them to stdout.

    On this machine the same work done in the request itself cost 40-74 µs of CPU a
    request, several times what it costs in a batch: between two waits on the database
    a request runs with cold caches. Queued, a request pays for an append; lines reach
    stdout at most 0.1 s later, and what is queued when the process ends is written then.
    Two threads, so that a write blocked by a stalled stdout holds up only the lines: one
    thread did both, and /metrics stopped counting until stdout was read again.
    """

    def __init__(
        self,
        request_id_key: str,
        write: logs.RequestWriter | None,
        counts: bool,
        *,
        queued: bool = True,
    ) -> None:
        self.request_id_key = request_id_key
        self.write = write
        self.counts = counts
        self.queued = queued  # False: record at once (text for a person watching)
        self.finished: deque[logs.Finished] = deque()  # to be counted
        self.unwritten: deque[logs.Finished] = deque()  # counted, their lines to write
        self.dropped = 0  # lines dropped since the last note; changed under _dropping
        self._dropping = threading.Lock()
        self._to_write = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], status_line: str, seconds: float) -> None:
        request = (
            time.time(),
            environ.get("REQUEST_METHOD", ""),
            environ.get(ROUTE_KEY, UNMATCHED),
            status_line,
            seconds,
            environ.get(self.request_id_key),
            environ.get(TRACE_IDS_KEY),
            environ.get(USER_UUID_KEY),
        )
        self.finished.append(request)
        if not self.queued:
            self.flush()
            self.write_unwritten()
        elif self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            # Started in the process that serves (after a server's fork), on first use.
            self._thread = threading.Thread(target=self._run, name="cruddur-requests", daemon=True)
            self._writer = threading.Thread(
                target=self._write_on, name="cruddur-request-lines", daemon=True
            )
            self._thread.start()
            self._writer.start()
            multiprocessing.util.Finalize(self, self._flush_at_exit, exitpriority=110)

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY)
            try:
                self.flush()
            except Exception:  # never let the counting thread end; try again next time
                logging.getLogger("cruddur.telemetry").exception("request metrics failed")

    def _write_on(self) -> None:
        while not self._stopping or self.unwritten:
            self._to_write.wait()
            self._to_write.clear()
            try:
                self.write_unwritten()
            except BrokenPipeError:
                self._reader_gone()
            except Exception:  # a full disk must not end the thread; try again next time
                logging.getLogger("cruddur.telemetry").exception("request log: write failed")

    def _flush_at_exit(self) -> None:
        self.flush()
        self._stopping = True
        self._to_write.set()
        if self._writer is not None:
            self._writer.join(EXIT_WRITE_SECONDS)  # a stalled stdout: the rest is lost

    def _reader_gone(self) -> None:
        # stdout's reader has gone (`cruddur serve | head -1`): the lines have nowhere to
        # go, and saying so on stderr once a second (with a traceback, as it did) helps
        # nobody. The counts for /metrics go on.
        self.write = None
        self.unwritten.clear()

    def flush(self) -> None:
        """Count the finished requests and queue their lines (MAX_QUEUED at most)."""
        taken = _taken(self.finished)
        if not taken:
            return
        if self.counts:
            metrics.observe_requests(taken)
        if self.write is None:
            return
        room = MAX_QUEUED - len(self.unwritten)
        if room < len(taken):
            with self._dropping:
                self.dropped += len(taken) - max(room, 0)
            taken = taken[: max(room, 0)]
        self.unwritten.extend(taken)
        self._to_write.set()

    def write_unwritten(self) -> None:
        write = self.write
        if write is None:
            return
        taken = _taken(self.unwritten)
        with self._dropping:
            dropped, self.dropped = self.dropped, 0
        if not taken and not dropped:
            return
        try:
            # The note follows the lines: the requests dropped came after those queued.
            write(taken, dropped)
        except BaseException:
            with self._dropping:  # said in the next note, rather than never
                self.dropped += dropped
            raise


def _taken(queued: deque[logs.Finished]) -> list[logs.Finished]:
    """What `queued` holds now, taken out. Unqueued (text lines), each request's thread
    takes from the same deque: another may empty it first (a list of len() popleft()s
    raised "pop from an empty deque" in a request, a review found)."""
    taken = []
    for _ in range(len(queued)):
        try:
            taken.append(queued.popleft())
        except IndexError:
            break
    return taken


def observer(request_id_key: str) -> Observer | None:
    write = logs.request_writer()
    counts = metrics.enabled()
    if write is None and not counts:
        return None
    return Recorder(request_id_key, write, counts, queued=logs.writes_json_to_stdout())
