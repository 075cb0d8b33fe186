"""Helpers the tests share: run a command as a user would, look into a database."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg

from cruddur.urls import parse

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "bin"


def run(
    command: str | Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | str = "/",
) -> subprocess.CompletedProcess[str]:
    """Run a bin/ script (or the cruddur command) as a user would, from another folder."""
    full_env = {
        k: v for k, v in os.environ.items() if k not in ("CONNECTION_URL", "PROD_CONNECTION_URL")
    }
    full_env.update({"NO_COLOR": "1", "COLUMNS": "200", **(env or {})})
    path = BIN / command if isinstance(command, str) and not command.startswith("/") else command
    return subprocess.run(
        [str(path), *args],
        env=full_env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


def database_exists(admin: psycopg.Connection, name: str) -> bool:
    row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return row is not None


def as_role(url: str, user: str, password: str) -> str:
    """The same database, connected as another role."""
    params = parse(url)
    params.update(user=user, password=password)
    return " ".join(f"{key}='{value}'" for key, value in params.items())
