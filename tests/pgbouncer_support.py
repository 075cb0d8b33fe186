"""A real PgBouncer in transaction mode in front of a test server (Debian's `pgbouncer`;
bin/test installs it). It runs as the `postgres` user when the tests run as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from helpers import as_postgres_user, free_port
from psycopg.conninfo import make_conninfo

from cruddur.urls import parse

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class PgBouncer:
    """PgBouncer on a free port, passing every database of `server_url`'s server through,
    with a small pool so that transactions really do move between server sessions.

    It lets in `server_url`'s user and the other `users` (name: password), with the same
    passwords towards the server."""

    def __init__(
        self,
        server_url: str,
        pool_size: int = 2,
        users: dict[str, str] | None = None,
        settings: dict[str, str] | None = None,  # more of its [pgbouncer] section
    ) -> None:
        if not Path(PGBOUNCER).is_file():
            raise RuntimeError(
                "pgbouncer is not installed: apt-get install pgbouncer (bin/test does it as root)"
            )
        self.server = parse(server_url)
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="cruddur-pgbouncer-"))
        user, password = self.server["user"], self.server.get("password", "")
        logins = {user: password, **(users or {})}
        (self.folder / "users.txt").write_text(
            "".join(f'"{name}" "{secret}"\n' for name, secret in logins.items())
        )
        (self.folder / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.server['host']} port={self.server['port']}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {self.folder / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
            "server_reset_query =\n"
            f"logfile = {self.folder / 'pgbouncer.log'}\n"
            f"pidfile = {self.folder / 'pgbouncer.pid'}\n"
            + "".join(f"{name} = {value}\n" for name, value in (settings or {}).items())
        )
        switch = as_postgres_user()
        if switch:
            os.chown(self.folder, switch["user"], switch["group"])
            for name in ("users.txt", "pgbouncer.ini"):
                os.chown(self.folder / name, switch["user"], switch["group"])
            os.chmod(self.folder / "users.txt", 0o600)
        # In the foreground PgBouncer writes its log to stderr as well as to its logfile.
        # A pipe nobody read filled up after ~64 kB of log (about 130 API tests' worth)
        # and PgBouncer blocked on the write: every later connection timed out, and it
        # did not end on SIGTERM. The logfile keeps all of it.
        self.process = subprocess.Popen(
            [PGBOUNCER, str(self.folder / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **switch,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(self.url_for(server_url), connect_timeout=2).close()
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    log = self.folder / "pgbouncer.log"
                    said = log.read_text()[-2000:] if log.exists() else "(no log)"
                    self.stop()
                    raise RuntimeError(f"PgBouncer did not start: {exc}\n{said}") from exc
                time.sleep(0.1)

    def url_for(self, url: str) -> str:
        """The same database as `url`, through this PgBouncer."""
        return make_conninfo(url, host="127.0.0.1", port=str(self.port))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # PgBouncer 1.18: immediate shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                # A PgBouncer blocked on a full stderr pipe did this (now its stderr goes
                # nowhere); a PgBouncer left running would hold its port and folder.
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)
