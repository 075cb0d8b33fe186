"""The module granian's worker processes load: `cruddur.worker:create_worker_app`.

granian forks its workers after installing its own SIGINT/SIGTERM handlers in the main
process. Until a worker has loaded the app and installed its own, it keeps that inherited
handler, which only sets a flag in the worker's copy of the main process's state: a stop
signal in that window was lost, the worker went on to serve, and the main process waited
for it forever (1 Ctrl-C in 4 right after start-up). So before the slow imports this
module restores SIGTERM's default action (a worker told to stop while loading simply
exits) and ignores SIGINT, which the main process answers by stopping its workers.
granian installs its graceful handlers once the app is loaded. (It lives outside
`cruddur.api` because importing that package is the slow part.) Under `cruddur serve`,
`cruddur.granian_main` already does so at the fork itself, closing the window before this
module runs; the reset here keeps a granian started otherwise safe.

Then it makes one thread of its own the only one the stops are delivered to (see
`forward_stops`): a worker sent two stops at once, as a terminal's Ctrl-C does, could
otherwise run no handler at all.
"""

import logging
import os
import signal
import threading
from collections.abc import Callable

STOPS = frozenset({signal.SIGINT, signal.SIGTERM})


def forward_stops() -> None:
    """Block SIGINT and SIGTERM in this (the main) thread, and so in every thread started
    after it, and handle them in one thread that waits for nothing else.

    CPython runs a Python signal handler only in the main thread, and only once that
    thread runs bytecode or is woken from a wait by the signal itself. A signal sent to
    the process may go to any thread that does not block it. Ctrl-C sends SIGINT to the
    whole group, and granian's main process sends each worker a SIGTERM of its own an
    instant later: the kernel would wake the worker's main thread (waiting on a lock in
    granian's `_main`) for one, and another thread would take both (strace: a tokio
    thread of granian's). The main thread went back to its wait without running the
    handler, and granian killed the worker after its kill timeout (5 s, "refused to
    gracefully stop": about 1 Ctrl-C in 2). Now every stop reaches the forwarding
    thread, which calls the handler then in force itself.
    Call it before any other thread starts (threads inherit their creator's mask) and
    never in a process that starts other programs (they would inherit it too).
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    threading.Thread(target=_forward, name="cruddur-stops", daemon=True).start()


def _forward() -> None:
    called: set[Callable[..., object]] = set()
    while True:
        stop = signal.sigwait(STOPS)
        if stop == signal.SIGINT:
            # A Ctrl-C reaches the whole group: the main process stops its workers with a
            # SIGTERM each. A worker that stopped on the SIGINT first, before the main
            # process had marked it as stopped, counted as a crash ("Unexpected exit from
            # worker-N", exit status 1: 3 trials in 6 stopped as workers started).
            continue
        handler = signal.getsignal(stop)
        if handler == signal.SIG_DFL:
            # The app is still loading: the default action ends the process.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {stop})
            signal.raise_signal(stop)
            # Still here: granian installed its handler in between (the main thread may
            # yet run it). Not serving yet, so ending now is a stop all the same, and a
            # sure one: calling the handler here as well could block (below).
            os._exit(128 + stop)
        # Each handler once: granian's (one function for SIGINT and SIGTERM) sets a
        # WorkerSignal whose set() sends on a channel of one place, read once the server
        # runs, and blocks holding the GIL while the channel is full. Called for both of
        # a Ctrl-C's signals as the worker started, it blocked here, and the main thread,
        # waiting for the GIL, never started the server that would read it (gdb).
        if callable(handler) and handler not in called:
            called.add(handler)
            try:
                handler(stop, None)
            except Exception:  # this thread must outlive it: it is the stops' only way in
                name = signal.Signals(stop).name
                logging.getLogger(__name__).exception("the %s handler failed", name)


signal.signal(signal.SIGTERM, signal.SIG_DFL)
# A Ctrl-C reaches the whole group, the main process too, which stops its workers with
# a SIGTERM: ended by the SIGINT itself, a worker counted as a crash ("Unexpected exit
# from worker-N", the server's exit status 1). Ignored until granian installs its
# handler, and passed over by the thread below after.
signal.signal(signal.SIGINT, signal.SIG_IGN)
forward_stops()

from cruddur.api import create_worker_app  # noqa: E402

__all__ = ["create_worker_app"]
