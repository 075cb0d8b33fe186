"""ops/interrupts.py: Ctrl-C held off across a COMMIT, in a real process sent SIGINT."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, signal, sys, time
from cruddur.ops import interrupts
try:
    with interrupts.held() as hold:
        hold()
        for _ in range(int(sys.argv[1])):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        print("block ended", flush=True)
except interrupts.CommitCut:
    print("cut", flush=True)
except KeyboardInterrupt:
    print("interrupted after the block", flush=True)
"""


def _run(signals: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(signals)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_one_ctrl_c_waits_for_the_block_then_interrupts() -> None:
    held = _run(1)
    assert held.stdout.splitlines() == ["block ended", "interrupted after the block"]
    assert "Ctrl-C again stops it" in held.stderr


def test_a_second_ctrl_c_stops_the_wait() -> None:
    # Held for good, a COMMIT that ran long (a deferred trigger, a synchronous standby
    # away) could not be stopped at all: every Ctrl-C was swallowed until it ended.
    cut = _run(2)
    assert cut.stdout.splitlines() == ["cut"]
