"""`cruddur serve` as a user runs it, on a free port, for tests that need real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers import ROOT

from cruddur.api.dev_keys import DevKeys
from cruddur.config import Settings

CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str  # the database's
    home: Path
    port: int
    process: subprocess.Popen

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, handle: str) -> str:
        """A dev access token for a seed user (the server trusts the same key pair)."""
        settings = Settings.from_env({"CRUDDUR_HOME": str(self.home), "CONNECTION_URL": self.url})
        return DevKeys(self.home).ensure().mint(settings.auth, f"MOCK-{handle}")


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/api/health", timeout=5) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


@contextmanager
def serve(url: str, home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Run `cruddur serve` on url's database (and `env`'s settings) until the block ends;
    its output goes to home/serve.log."""
    port = free_port()
    env = {
        **os.environ,
        "CONNECTION_URL": url,
        "CRUDDUR_HOME": str(home),
        "NO_COLOR": "1",
        **(env or {}),
    }
    env.pop("PROD_CONNECTION_URL", None)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "serve.log", "w") as log:
        process = subprocess.Popen(
            [str(CRUDDUR), "serve", "--port", str(port), "--workers", "1", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Served(url, home, port, process)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(served.base):
            assert process.poll() is None, (home / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not answer in 30 s"
            time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
