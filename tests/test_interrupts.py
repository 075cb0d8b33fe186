"""ops/interrupts.py: Ctrl-C held off across a COMMIT, in a real process sent SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import CRUDDUR, silent_port

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


def _ctrl_c_while_connecting(*args: str) -> tuple[int | None, str, float]:
    """Run `cruddur ARGS` against a server that accepts and never answers, and press
    Ctrl-C (SIGINT to its process group, as a terminal sends it) once it has named the
    database and is connecting: its exit status, stderr, and seconds it took to end."""
    with silent_port() as port:
        env = {k: v for k, v in os.environ.items() if k != "PROD_CONNECTION_URL"}
        env.update(
            NO_COLOR="1",
            CONNECTION_URL=f"postgresql://postgres@127.0.0.1:{port}/fix_cli_never",
            CRUDDUR_CONNECT_TIMEOUT="30",
        )
        process = subprocess.Popen(
            [CRUDDUR, *args], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            text=True, start_new_session=True, cwd="/",
        )  # fmt: skip
        try:
            assert process.stderr is not None
            seen = []
            while not any(line.startswith("database:") for line in seen):
                line = process.stderr.readline()
                assert line, "".join(seen)  # it ended before naming the database
                seen.append(line)
            time.sleep(1)  # well inside the connection's 30 s
            os.killpg(process.pid, signal.SIGINT)
            sent = time.monotonic()
            rest = process.communicate(timeout=30)[1]
            return process.returncode, "".join(seen) + rest, time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        (["db", "seed", "--fake", "--users", "10", "--activities", "100"], "nothing was written"),
        (["db", "seed", "--fake", "--replace"], "nothing was written or deleted"),
        (["db", "setup"], "nothing was changed"),
        (["db", "purge-expired"], "nothing was deleted"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else value,
)
def test_ctrl_c_before_the_connection_says_what_was_kept(args: list[str], kept: str) -> None:
    # It said only "error: interrupted (Ctrl-C)", though the README promises for seed
    # --fake "that nothing was written", as it says when stopped later.
    status, err, took = _ctrl_c_while_connecting(*args)
    assert status == 130, err
    assert f"interrupted: {kept}\n" in err, err
    assert "Traceback" not in err and "Aborted!" not in err
    assert took < 10, err  # not the connection's timeout
