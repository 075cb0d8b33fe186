"""A signal to this process when its parent dies (Linux's PR_SET_PDEATHSIG): a server's
workers and its metrics exporter end with it, however it ends.

The kernel sends it when the parent *thread* that started this process ends; a parent
with threads may send it more than once as they end (each a SIGTERM to handle as one)."""

from __future__ import annotations

import ctypes
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# libc, loaded once at import (before a server forks its workers) rather than in each child.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def signal_on_parent_death(signum: int) -> bool:
    """Ask for `signum` when the parent dies; False where that cannot be had."""
    return _libc is not None and _libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
