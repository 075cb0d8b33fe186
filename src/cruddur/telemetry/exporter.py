"""The /metrics endpoint: the workers' counts added up, served on CRUDDUR_METRICS_PORT.

`cruddur serve` starts this process before it becomes the server (exec), so the server is
its parent; it ends when the server does and removes the counts folder.

    python -m cruddur.telemetry.exporter --dir FOLDER --port 9464 [--host 127.0.0.1]

It writes one line on stdout once listening ("ready"), or exits with status 1 saying why.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

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

    def collect(self) -> Iterator[Any]:
        from prometheus_client import multiprocess

        for path in glob.glob(os.path.join(self.folder, "gauge_live*_*.db")):
            pid = int(os.path.basename(path).rsplit("_", 1)[1].split(".")[0])
            if not _alive(pid):
                multiprocess.mark_process_dead(pid, self.folder)
        return self.inner.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = args.dir
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(LiveWorkersCollector(args.dir))
    try:
        start_http_server(args.port, args.host, registry=registry)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_EVERY)
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
