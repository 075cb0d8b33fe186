"""gunicorn's settings as `cruddur serve` runs it (`--config python:cruddur.gunicorn_config`;
the command line gives all the others): its main process removes, as it ends, the file
its workers share (services/last_write.py), which `cruddur serve` made before the exec,
and the metrics' counts folder. granian's main process does the same in
`cruddur.granian_main`, and takes SIGHUP for a stop as this does (gunicorn reloads on it:
a terminal that closed left the server running with nobody to stop it)."""

from __future__ import annotations

import logging
import os
import re
import signal
from typing import Any

from cruddur.gunicorn_main import STOPS, stop_now
from cruddur.parent_death import signal_on_parent_death
from cruddur.services import last_write
from cruddur.telemetry.counts_folder import remove_counts_folder

HANG_UP_IGNORED = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN  # under nohup
_QUERY = re.compile(r"\?[^\s'\"]*")  # in a quoted request line: from ? to its end


def _without_queries(record: logging.LogRecord) -> bool:
    """gunicorn's warning of a malformed request ("Invalid HTTP request line: 'GET
    /x?access_token=… HTTP/1.1'") quoted its request line, query and all: a token sent
    there was logged. The query is left out, as from every request line."""
    message = record.getMessage()
    if "?" in message:
        record.msg, record.args = _QUERY.sub("?…", message), ()
    return True


def on_starting(server: Any) -> None:
    # Before any worker forks: theirs is the same logger, filter and all.
    logging.getLogger("gunicorn.error").addFilter(_without_queries)


def when_ready(server: Any) -> None:
    # After gunicorn's own handlers (Arbiter.init_signals), before any worker starts.
    if HANG_UP_IGNORED:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGHUP, lambda _, frame: server.signal(signal.SIGTERM, frame))


def post_fork(server: Any, worker: Any) -> None:
    # The stop signals, held since the fork (cruddur.gunicorn_main), end this worker at
    # once until gunicorn's own handlers replace these (as post_fork returns).
    for stop in STOPS:
        signal.signal(stop, stop_now)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
    # gunicorn's workers set SIGHUP back to its default action as they start: under
    # nohup, a shell that exits (SIGHUP to its jobs' groups) killed every worker at once,
    # requests and all. Held from the fork until post_worker_init ignores it again.
    if HANG_UP_IGNORED:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    # A worker ends with its main process, however that ends (kill -9, the OOM killer),
    # as granian's do (granian_main): a sync worker (--threads 1) served on for 10-20 s,
    # until its own check of its parent, and a server started again found the port taken.
    if signal_on_parent_death(signal.SIGTERM) and os.getppid() != server.pid:
        os.kill(os.getpid(), signal.SIGTERM)  # it died before the prctl


def post_worker_init(worker: Any) -> None:
    if HANG_UP_IGNORED:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # one held meanwhile is dropped
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def on_exit(server: Any) -> None:
    last_write.remove(os.environ.get(last_write.ENV))
    remove_counts_folder()
