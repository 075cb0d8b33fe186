"""A server's main process as `cruddur serve` execs into it (cruddur.granian_main,
cruddur.gunicorn_main): its start, its Ctrl-C, its end.

- A Ctrl-C in its first moments, while the server and the app are imported and before
  the server's own handlers are in, is a stop: exit 130, no traceback (granian's printed
  ~40 lines from importlib, gunicorn's ~20).
- It removes, as it ends, what `cruddur serve` made before the exec: the workers' shared
  last write and the metrics' counts folder. Only the process that started: a worker
  forked from it may end through the same frame (gunicorn's end with sys.exit), and one
  that removed them stopped the others' counts and the server.
- Its stdout's reader gone (`cruddur serve | head -1`), every record after printed
  "--- Logging error ---" and a traceback to stderr, the server's own and the workers'
  (which inherit this setting): the lines are dropped without a word, the server serves on.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable

CTRL_C = frozenset({signal.SIGINT})


def hold_ctrl_c() -> None:
    """Hold SIGINT until run_main_process takes it: the first thing a main process does
    (`cruddur serve` holds it across its exec too). A Ctrl-C while Python loaded the
    modules before that was a KeyboardInterrupt traceback."""
    signal.pthread_sigmask(signal.SIG_BLOCK, CTRL_C)


def run_main_process(start: Callable[[], object]) -> None:
    """start() (which imports the server and runs it) as described above."""
    from cruddur.services import last_write
    from cruddur.telemetry.counts_folder import remove_counts_folder

    logging.raiseExceptions = False
    main = os.getpid()
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, CTRL_C)  # one held is raised here
        start()
    except KeyboardInterrupt:
        if os.getpid() != main:
            raise
        sys.exit(128 + signal.SIGINT)
    finally:
        if os.getpid() == main:
            hold_ctrl_c()  # the clean-up is not cut short; the process ends after it
            last_write.remove(os.environ.get(last_write.ENV))
            remove_counts_folder()
