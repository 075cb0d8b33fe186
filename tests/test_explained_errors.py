"""The common errors come out as one line with the fix, never as a traceback."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import uuid

import psycopg
import pytest
from helpers import CRUDDUR, ROOT, as_role, cli, run
from psycopg import sql

from cruddur.db import Db
from cruddur.db.errors import explain
from cruddur.urls import parse, with_database


def assert_explained(result, *fragments: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_server_not_reachable() -> None:
    result = cli(
        "db-schema-load", env={"CONNECTION_URL": "postgresql://postgres@127.0.0.1:1/cruddur"}
    )
    assert_explained(result, "Connection refused", "is the server running", "security group")
    # libpq's two lines, joined as two sentences (a review: "refused Is the server").
    assert "Connection refused. Is the server running on that host" in result.stderr


def test_host_not_found() -> None:
    result = cli("db-create", env={"CONNECTION_URL": "postgresql://u@no-such-host.invalid/cruddur"})
    assert_explained(result, "no-such-host.invalid", "is the server running")


def test_authentication_failed(empty_db, login_role, passwords_checked) -> None:
    # A role that does not exist fails on any server; a wrong password where it is checked
    # (a trust-auth test server lets it in).
    cases = [("no_such_role_x", "x")] + [(login_role, "wrong-password")] * passwords_checked
    for user, password in cases:
        result = run("db-schema-load", env={"CONNECTION_URL": as_role(empty_db, user, password)})
        assert_explained(result, "check the user name")
        assert "wrong-password" not in result.stderr


def test_database_does_not_exist(server_url) -> None:
    missing = with_database(server_url, f"cruddur_test_missing_{uuid.uuid4().hex[:8]}")
    result = cli("db-schema-load", env={"CONNECTION_URL": missing})
    assert_explained(result, "does not exist", "bin/db-create", "bin/db-setup")


def test_relation_does_not_exist(empty_db) -> None:
    result = cli("db-seed", env={"CONNECTION_URL": empty_db})
    assert_explained(result, 'relation "public.users" does not exist', "bin/db-migrate")
    assert "seed.sql:8:" in result.stderr  # the file and line of the failing statement


def test_extension_not_available(db: Db) -> None:
    with pytest.raises(psycopg.Error) as caught:
        db.query_commit('CREATE EXTENSION "no-such-extension"')
    explained = explain(caught.value)
    assert explained is not None
    assert explained.kind == "no-extension"
    assert "postgresql-contrib" in explained.hint


def test_database_in_use(empty_db) -> None:
    with psycopg.connect(empty_db):
        result = cli("db-drop", env={"CONNECTION_URL": empty_db})
    assert_explained(result, "1 other session is connected", "--force", "bin/db-sessions")


def test_permission_denied(empty_db, login_role, admin) -> None:
    result = cli(
        "db-schema-load", env={"CONNECTION_URL": as_role(empty_db, login_role, "right-password")}
    )
    assert_explained(result, "permission denied", "lacks this privilege")
    admin.execute(
        sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(
            sql.Identifier(parse(empty_db)["dbname"])
        )
    )
    result = cli("db-seed", env={"CONNECTION_URL": as_role(empty_db, login_role, "right-password")})
    assert_explained(result, "permission denied for database", "lacks this privilege")


def test_unknown_failures_carry_no_traceback() -> None:
    result = cli("db-create", env={"CONNECTION_URL": "postgresql://u@127.0.0.1:1/"})
    assert_explained(result, "names no database")


def test_malformed_url_is_not_echoed() -> None:
    result = run("db-create", env={"CONNECTION_URL": "postgresql://u:sekrit@[bad/cruddur"})
    assert_explained(result, "malformed")
    assert "sekrit" not in result.stderr


def test_a_hints_script_reads_the_settings_the_command_read(
    server_url: str, new_db_name, admin, tmp_path
) -> None:
    # A review: run from a project with a .env of its own, the hint named the checkout's
    # bin/db-create, which reads the checkout's settings: it made the checkout's database
    # (and bin/db-setup, the other hint, would have dropped it). The hint now carries the
    # .env the command read, which the scripts keep.
    name = new_db_name()
    project = tmp_path / "project"
    project.mkdir()
    dotenv = project / ".env"
    dotenv.write_text(f"CONNECTION_URL={with_database(server_url, name)}\n")
    dotenv.chmod(0o600)
    home = {"CRUDDUR_HOME": str(tmp_path / "home")}
    shown = run(CRUDDUR, "db", "status", env=home, cwd=project)
    hint = f"CRUDDUR_ENV_FILE={shlex.quote(str(dotenv))} {shlex.quote(str(ROOT / 'bin'))}/"
    assert f"`{hint}db-create`" in shown.stdout, shown.stdout
    assert f"`{hint}db-setup`" in shown.stdout
    (command,) = re.findall(r"create it with `([^`]+)`", shown.stdout)
    pasted = subprocess.run(
        ["bash", "-c", command], cwd=project, capture_output=True, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.endswith(_SETTINGS)}, **home},
    )  # fmt: skip
    assert pasted.returncode == 0, pasted.stderr
    made = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    assert made == (1,)
    # A review of that: CRUDDUR_ENV_FILE set for the command alone was left out of the
    # hint (the script, run without it, read the checkout's settings).
    elsewhere = tmp_path / "elsewhere.env"
    elsewhere.write_text(f"CONNECTION_URL={with_database(server_url, new_db_name())}\n")
    elsewhere.chmod(0o600)
    shown = run(CRUDDUR, "db", "status", env={**home, "CRUDDUR_ENV_FILE": str(elsewhere)})
    assert f"CRUDDUR_ENV_FILE={shlex.quote(str(elsewhere))} " in shown.stdout, shown.stdout


_SETTINGS = ("CONNECTION_URL", "CRUDDUR_ENV_FILE")  # the pasted command's own come from .env
