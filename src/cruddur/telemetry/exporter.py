"""The /metrics endpoint: the workers' counts added up, served on CRUDDUR_METRICS_PORT.

`cruddur serve` starts this process before it becomes the server (exec), so the server is
its parent; it ends when the server does and removes the counts folder.

    python -m cruddur.telemetry.exporter --dir FOLDER --port 9464 [--host 127.0.0.1] [--parent PID]

It writes one line on stdout once listening ("ready"), or exits with status 1 saying why.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from cruddur.parent_death import signal_on_parent_death
from cruddur.telemetry.counts_folder import remove_counts_folder

PARENT_CHECK_EVERY = 0.5  # seconds


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LiveWorkersCollector:
    """prometheus_client's MultiProcessCollector, after dropping the gauges of workers
    that died without saying so (killed, crashed): their pool is gone."""

    def __init__(self, folder: str) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.folder = folder
        self.inner = MultiProcessCollector(None, path=folder)
        # Scrapes run on threads of their own: two at once both removed a dead worker's
        # files, and the second's FileNotFoundError made its scrape a 500.
        self._dropping = threading.Lock()

    def collect(self) -> Iterator[Any]:
        from prometheus_client import multiprocess

        with self._dropping:
            for path in glob.glob(os.path.join(self.folder, "gauge_live*_*.db")):
                pid = int(os.path.basename(path).rsplit("_", 1)[1].split(".")[0])
                if not _alive(pid):
                    with contextlib.suppress(FileNotFoundError):  # another exporter's doing
                        multiprocess.mark_process_dead(pid, self.folder)
        return self.inner.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    # The server's pid (`cruddur serve`'s, which it execs into): a parent that died before
    # this started left it to serve under init, for ever, had it taken init for its parent.
    parser.add_argument("--parent", type=int, default=None)
    args = parser.parse_args()
    parent = args.parent or os.getppid()
    # A SIGTERM (the kernel's, as the server's threads end, one each; or someone's kill)
    # only says to stop: raising there, a second one cut short the clean-up below.
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    # At once with the server, however it ends: polling alone held the metrics port up to
    # PARENT_CHECK_EVERY past its end, and a server started again at once found it taken.
    signal_on_parent_death(signal.SIGTERM)
    try:
        if os.getppid() != parent:  # it died before the prctl
            return
        _serve(args)
        while os.getppid() == parent and not stopping.wait(PARENT_CHECK_EVERY):
            pass
    finally:
        # The folder only once the server is gone: its workers count into it, and one
        # starting after it was removed failed, stopping the whole server. (The server's
        # main process removes it too as it ends: this one may end first.) A server
        # dying has its threads end one by one, each a SIGTERM here, before it is gone.
        if _server_gone(parent, within=SERVER_GONE_WITHIN):
            remove_counts_folder(args.dir)


SERVER_GONE_WITHIN = 1.0  # seconds a stopping exporter waits to see its server gone


def _server_gone(parent: int, *, within: float) -> bool:
    deadline = time.monotonic() + within
    while os.getppid() == parent:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _serve(args: argparse.Namespace) -> None:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = args.dir
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(LiveWorkersCollector(args.dir))
    try:
        start_http_server(args.port, args.host, registry=registry)
    except OSError as exc:
        _say(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
        sys.exit(1)
    _say("ready")


def _say(line: str) -> None:
    """One line to `cruddur serve`, which may have stopped reading (stopped itself
    meanwhile): a BrokenPipeError here skipped the clean-up and printed a traceback."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()
