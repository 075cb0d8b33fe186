"""`python -m cruddur.healthcheck`, the containers' health check, against a real
`cruddur serve`: alive while its database is away, never asked through a proxy."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit

from helpers import free_port
from web_support import serving


def _check(base: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    port = str(urlsplit(base).port)
    return subprocess.run(
        [sys.executable, "-m", "cruddur.healthcheck", *args],
        env={**os.environ, "PORT": port, **env},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_a_server_whose_database_is_away_is_alive_but_not_ready(tmp_path) -> None:
    # A 503 while the database was away made the check fail: within 30 s ECS replaced
    # every task of a service whose processes were fine, and serving waited on new ones.
    nobody = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/cruddur"
    with serving({"CONNECTION_URL": nobody, "CRUDDUR_HOME": str(tmp_path)}, ready=(503,)) as base:
        alive = _check(base)
        assert alive.returncode == 0, alive.stderr
        assert "the database is away" in alive.stderr
        assert _check(base, "--ready").returncode == 1
        # Never through a proxy: HTTP_PROXY set for a task's egress sent it there.
        dead_proxy = f"http://127.0.0.1:{free_port()}"
        proxied = _check(base, http_proxy=dead_proxy, HTTP_PROXY=dead_proxy, NO_PROXY="")
        assert proxied.returncode == 0, proxied.stderr


def test_nothing_on_the_port_is_not_alive() -> None:
    assert _check(f"http://127.0.0.1:{free_port()}").returncode == 1
