"""granian's main process as `cruddur serve` runs it: `python -m cruddur.granian_main …`
is `python -m granian …` with one addition, made before granian forks any worker.

A forked worker starts with the main process's SIGINT/SIGTERM handler, which only sets a
flag in the worker's copy of the main process's state. A stop sent to a worker in that
window, before `cruddur.worker` restores the default actions, was lost: the worker went
on to load the app and serve, and the main process waited for it until its kill timeout
(5 s, "refused to gracefully stop"), the whole server stopping 5 s late. Here every fork
blocks both signals around it, and the child restores their default actions before it
unblocks them: a stop that arrives at any moment before the worker installs its own
handlers ends the worker at once (`cruddur.worker` then takes over, as before).
Its start, its Ctrl-C and its end (removing what `cruddur serve` made for the workers
before the exec) are cruddur.main_process's.
Each forked worker also asks the kernel for a SIGTERM when the main process dies
(PR_SET_PDEATHSIG, Linux): a main process killed outright (SIGKILL, the OOM killer) no
longer leaves its workers serving on the port with nobody to stop them; each drains and
exits as it would on `kill`. (granian forks from its main thread only, the thread whose
end would otherwise fire it.)
Where granian spawns its workers instead of forking them (newer Pythons), neither this
nor the import below applies: `cruddur.worker`'s own reset covers the stops there.
SIGHUP stops the server as SIGINT and SIGTERM do, where granian respawns its workers:
a terminal that closed (or an SSH session lost) sends it, and the server went on with
nobody to see it or stop it, holding the port. (Its workers fork from modules this
process imported, so a respawn never loaded new code anyway.) Ignored on entry (`nohup`),
it stays ignored.
"""

import os
import signal
import sys
import threading

STOPS = frozenset({signal.SIGINT, signal.SIGTERM})
HANG_UP_IGNORED = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN  # under nohup
# Each forking thread's mask from before its fork (a signal mask is a thread's own: two
# threads forking at once must each get theirs back).
_saved = threading.local()


def _before_fork() -> None:
    _saved.parent = os.getpid()
    _saved.mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)


def _end_with_parent(parent: int) -> None:
    """SIGTERM to this process when its parent dies; at once if it already has."""
    from cruddur.parent_death import signal_on_parent_death  # loaded before the fork

    if not signal_on_parent_death(signal.SIGTERM):
        return  # not fatal: the worker serves as before, as it did without this
    if os.getppid() != parent:  # the parent died between the fork and the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _after_fork_in_parent() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, _saved.mask)


def _after_fork_in_child() -> None:
    # Until granian's own handlers: a SIGTERM (the main process's stop, or the parent's
    # death) ends the worker at once; a SIGINT is ignored. A Ctrl-C reaches the whole
    # group, the main process too, which then stops its workers itself: ended by the
    # SIGINT first, a worker just forked counted as a crash ("Unexpected exit from
    # worker-1"), and the server exited 1.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent(_saved.parent)
    # A stop sent since the fork waits, blocked; unblocked now, it ends the worker.
    signal.pthread_sigmask(signal.SIG_SETMASK, _saved.mask)


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


def _hang_up_stops() -> None:
    """granian's main-process signals, with SIGHUP given the stop's handler."""
    from granian.server import common

    set_main_signals = common.set_main_signals

    def with_hang_up_a_stop(interrupt: object, reload: object = None) -> None:
        set_main_signals(interrupt, reload)
        signal.signal(signal.SIGHUP, signal.SIG_IGN if HANG_UP_IGNORED else interrupt)

    common.set_main_signals = with_hang_up_a_stop


def _serve() -> None:
    # The app's modules, imported once here rather than in every worker after its fork
    # (about 0.3 s of CPU each): the workers inherit them. Importing them starts no
    # thread and opens no connection (each worker's create_worker_app does that, after
    # the fork); cruddur.worker, which does start a thread, is still each worker's own.
    import click
    from granian.cli import cli

    # cruddur.parent_death: libc loaded once, here, not in each worker after its fork.
    from cruddur import api, parent_death  # noqa: F401
    from cruddur.telemetry import server_lines
    from cruddur.web.assets import read_before_forking

    read_before_forking()  # a respawned worker serves the files the others do
    server_lines.install()  # a stalled stdout must not hold up a stop
    _hang_up_stops()
    try:
        # As granian.cli.entrypoint runs it, but a Ctrl-C before granian's handlers are in
        # is a stop (130), not click's "Aborted!" and exit status 1.
        # Not standalone, click returns the status of granian's `Exit(1)` (a fatal error
        # as it starts, a log config it cannot read) instead of exiting with it.
        status = cli.main(auto_envvar_prefix="GRANIAN", standalone_mode=False)
    except click.exceptions.Abort:
        raise KeyboardInterrupt from None
    except click.ClickException as exc:  # what standalone mode prints: a usage error
        exc.show()
        sys.exit(exc.exit_code)
    if isinstance(status, int) and status:
        sys.exit(status)


if __name__ == "__main__":
    from cruddur.main_process import hold_ctrl_c, run_main_process

    hold_ctrl_c()
    run_main_process(_serve)
