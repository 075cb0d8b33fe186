"""The folder a server's workers count their metrics in (prometheus_client's
multiprocess mode, PROMETHEUS_MULTIPROC_DIR).

`cruddur serve` makes one per server and names it in COUNTS_FOLDER_ENV too, which says
the folder is Cruddur's to remove (a PROMETHEUS_MULTIPROC_DIR of the user's own is never
removed). The server's main process removes it as it ends; the exporter only once the
server is gone: removed while the server ran (the exporter stopped on its own), the next
worker to start failed on a missing file and granian stopped the whole server.
"""

from __future__ import annotations

import os
import shutil
import tempfile

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
COUNTS_FOLDER_ENV = "CRUDDUR_METRICS_COUNTS_FOLDER"


def make_counts_folder() -> str:
    """A new folder, named in both variables of this process's environment (the server
    and its workers inherit them)."""
    folder = tempfile.mkdtemp(prefix="cruddur-metrics-")
    os.environ[MULTIPROC_DIR] = os.environ[COUNTS_FOLDER_ENV] = folder
    return folder


def remove_counts_folder(folder: str | None = None) -> None:
    """`folder`, else the one COUNTS_FOLDER_ENV names (none: nothing to remove)."""
    folder = folder or os.environ.get(COUNTS_FOLDER_ENV)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
