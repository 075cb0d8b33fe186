"""`python -m cruddur.gunicorn_main ARGS`: gunicorn's command line (`python -m gunicorn`),
what `cruddur serve --server gunicorn` execs into, run as cruddur.main_process runs a
server's main process (a Ctrl-C while it imports, its clean-up; granian's is
cruddur.granian_main)."""

from __future__ import annotations

import os
import signal
from typing import Any

# The signals that stop a worker, held from its fork until post_fork gives them handlers
# of the worker's own (cruddur.gunicorn_config), as granian's are (cruddur.granian_main).
STOPS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGQUIT})


def _hold_stops_while_forking(arbiter: Any) -> None:
    """Block STOPS in the main process while it forks a worker. Until gunicorn installs
    a worker's handlers, the worker has the main process's (which only queue a signal
    for the main loop the worker never runs), and Python drops what arrived in the
    fork itself: a Ctrl-C as a worker booted was lost, and so was the main process's
    SIGQUIT after it, and gunicorn killed the worker 10 s later ("was sent SIGKILL!")."""
    spawn = arbiter.spawn_worker

    def spawn_worker(self: Any) -> Any:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
        try:
            return spawn(self)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    arbiter.spawn_worker = spawn_worker


def stop_now(signum: int, frame: Any) -> None:
    """A worker's stop before gunicorn's handlers: it has nothing to finish yet."""
    os._exit(0)


def _serve() -> None:
    from gunicorn.app.wsgiapp import run
    from gunicorn.arbiter import Arbiter

    from cruddur.web.assets import read_before_forking

    _hold_stops_while_forking(Arbiter)
    read_before_forking()  # a respawned worker serves the files the others do
    run(prog="gunicorn")


if __name__ == "__main__":
    from cruddur.main_process import hold_ctrl_c, run_main_process

    hold_ctrl_c()
    run_main_process(_serve)
