"""`cruddur serve` as a real process for the tests (and bench/outage.py): started on a
free port in its own process group, watched line by line, asked over HTTP, and stopped
with whatever it left behind. served.py, web_support.py and test_telemetry.py build on it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from helpers import ROOT, free_port

CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"


def request(url: str, **kwargs) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request (urllib.request.Request's arguments): the status, the headers
    (lower-case names) and the body, whatever the status."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, **kwargs), timeout=10) as answer:
            return answer.status, _lower(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers), error.read()


def _lower(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _ignore_stops() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _ignore_hang_up() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as `nohup` starts it


class Served:
    """One `cruddur serve`; its output is kept, and `saw(text)` waits for a line.

    The environment is this process's without the variables named (or prefixed) in
    `unset`, then `env`: a test's server never reaches the production database unless
    the test gives it the URL."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str],
        port: int | None = None,
        unset: Iterable[str] = ("PROD_CONNECTION_URL",),
        stops_ignored: bool = False,
        hang_up_ignored: bool = False,
    ) -> None:
        self.port = port or free_port()
        unset = tuple(unset)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(unset)}
        full_env.update(env, NO_COLOR="1", PORT=str(self.port))
        self.process = subprocess.Popen(
            [str(CRUDDUR), "serve", *args],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own group: whatever it forks can be found
            # As a script's background job starts it (`cruddur serve &`, no job control).
            preexec_fn=_ignore_stops
            if stops_ignored
            else _ignore_hang_up
            if hang_up_ignored
            else None,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # end of output
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def saw(self, text: str, timeout: float = 30) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: any(text in line for line in self.lines) or "" in self.lines, timeout
            ) and any(text in line for line in self.lines)

    def get(self, path: str, timeout: float = 5) -> int:
        try:
            with urllib.request.urlopen(f"{self.base}{path}", timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def wait_healthy(self, timeout: float = 30, ready: Iterable[int] = (200,)) -> None:
        """Until /api/health answers with a status in `ready` (503: a database down)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.get("/api/health", timeout=1) in ready:
                    return
            except OSError:
                pass
            assert self.process.poll() is None, self.output
            assert time.monotonic() < deadline, f"no answer in {timeout} s:\n{self.output}"
            time.sleep(0.03)  # a refused connection costs next to nothing

    def leftovers(self) -> list[int]:
        return group_members(self.process.pid)

    def kill_all(self) -> None:
        """Last resort for a test that failed: the whole group, by its id."""
        if self.leftovers():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        finally:
            self.kill_all()
            self._reader.join(timeout=5)  # the last lines, once every writer has ended
        return self.output
