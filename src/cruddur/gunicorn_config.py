"""gunicorn's settings as `cruddur serve` runs it (`--config python:cruddur.gunicorn_config`;
the command line gives all the others): its main process removes, as it ends, the file
its workers share (services/last_write.py), which `cruddur serve` made before the exec.
granian's main process does the same in `cruddur.granian_main`."""

from __future__ import annotations

import os
from typing import Any

from cruddur.services import last_write


def on_exit(server: Any) -> None:
    last_write.remove(os.environ.get(last_write.ENV))
