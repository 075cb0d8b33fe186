"""`cruddur serve` as a user runs it, on a free port, for tests that need real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import server_support

from cruddur.config import Settings
from cruddur.dev_keys import DevKeys


class Served(server_support.Served):
    """`cruddur serve` (1 worker) on url's database, with home as its CRUDDUR_HOME and
    `env`'s settings besides."""

    def __init__(self, url: str, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.url = url  # the database's
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        settings = {"CONNECTION_URL": url, "CRUDDUR_HOME": str(home), **(env or {})}
        super().__init__("--workers", "1", *args, env=settings)

    def token(self, handle: str) -> str:
        """A dev access token for a seed user (the server trusts the same key pair)."""
        settings = Settings.from_env({"CRUDDUR_HOME": str(self.home), "CONNECTION_URL": self.url})
        return DevKeys(self.home).ensure().mint(settings.auth, f"MOCK-{handle}")


@contextmanager
def serve(url: str, home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Run `cruddur serve` on url's database (and `env`'s settings) until the block ends."""
    served = Served(url, home, *args, env=env)
    try:
        served.wait_healthy()
        yield served
    finally:
        served.stop()
