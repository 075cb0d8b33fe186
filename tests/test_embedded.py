"""The embedded server: `db up`, `db down`, `db status`, and commands that start it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers import ROOT, run
from server_support import free_port

from cruddur.embedded import (
    SHARED_ROOT,
    EmbeddedPostgres,
    RunAs,
    _pgserver_bin,
    find_bin_dir,
)
from cruddur.urls import parse, with_user


@pytest.fixture
def home(tmp_path):
    """A project state folder of its own; its server is stopped and removed afterwards."""
    state = tmp_path / "state"
    yield state
    cruddur("db", "down", env={"CRUDDUR_HOME": str(state)})
    server_json = state / "postgres.json"
    if server_json.is_file():  # as root, the cluster may live outside tmp_path
        cluster_dir = Path(json.loads(server_json.read_text())["cluster_dir"])
        shutil.rmtree(cluster_dir, ignore_errors=True)
        if cluster_dir.parent.parent == SHARED_ROOT:
            cluster_dir.parent.rmdir()


def cruddur(*args: str, env: dict[str, str]):
    return run(ROOT / ".venv" / "bin" / "cruddur", *args, env=env)


def _serve_says(env: dict[str, str]) -> str:
    """What `cruddur serve`, run from the checkout as bin/run runs it, prints before the
    WSGI server takes over; the server is stopped then."""
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("CONNECTION_URL")}
    full_env.update(env, NO_COLOR="1", PORT=str(free_port()))
    process = subprocess.Popen(
        [".venv/bin/cruddur", "serve", "--workers", "1"],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        for line in process.stdout:  # ends when the process does, at worst
            lines.append(line)
            if line.startswith("server:"):
                break
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    return "".join(lines)


def test_setup_starts_the_embedded_server_when_no_url_is_set(home) -> None:
    env = {"CRUDDUR_HOME": str(home)}
    before = cruddur("db", "status", env=env)
    assert before.returncode == 1
    assert "not running" in before.stdout

    setup = run("db-setup", env=env)
    assert setup.returncode == 0, setup.stderr
    assert "local, embedded server" in setup.stderr
    # A verb that starts the server says so, and how to stop it: it outlives the verb.
    started = "started the embedded PostgreSQL; it keeps running after this command"
    assert started in setup.stderr and "cruddur db down` stops it" in setup.stderr

    # bin/run ends in `cruddur serve`, which says the server outlives it, and how to stop it.
    said = _serve_says(env)
    assert "embedded PostgreSQL keeps running after the API stops" in said, said
    assert "`.venv/bin/cruddur db down` stops it" in said, said

    status = cruddur("db", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "running on 127.0.0.1:" in status.stdout
    assert "schema    loaded (3 users, 5 activities)" in status.stdout
    state = json.loads((home / "postgres.json").read_text())
    assert f"data in {state['cluster_dir']}/data" in status.stdout
    assert state["password"] not in setup.stderr + status.stdout

    # The API's URL as serve hands it to the workers: SCRAM only, so a program holding
    # the port while the server is down is never sent the password (test_scram_only.py).
    from cruddur.config import Settings
    from cruddur.targets import api_url as served_api_url
    from cruddur.targets import resolve

    settings = Settings.from_env({"CRUDDUR_HOME": str(home)})
    handed = served_api_url(settings, resolve(settings))
    assert parse(handed).get("require_auth") == "scram-sha-256"
    with psycopg.connect(handed) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("cruddur_api",)

    # The API's role, made by setup, with its password in root's state only.
    api_url = EmbeddedPostgres(home).url(role="cruddur_api")
    assert state["roles"]["cruddur_api"] not in setup.stdout + setup.stderr
    with psycopg.connect(api_url, autocommit=True) as conn:
        who = conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        assert who.fetchone() == ("cruddur_api", False)
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (3,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE activities")

    down = cruddur("db", "down", env=env)
    assert down.returncode == 0
    assert "stopped" in down.stderr
    assert "not running" in cruddur("db", "status", env=env).stdout

    up = cruddur("db", "up", env=env)
    assert up.returncode == 0, up.stderr
    assert "***" in up.stderr  # the generated password is not shown
    again = cruddur("db", "status", env=env)  # the data survived the restart
    assert "schema    loaded (3 users, 5 activities)" in again.stdout
    token = cruddur("dev", "token", "--handle", "andrewbrown", env=env)
    assert token.returncode == 0, token.stderr
    assert started not in token.stderr  # it was running already

    # For a server that does not stop on its own (a review: `db down` failed after 60 s
    # with pg_ctl's words alone): a crash stop, and the next start recovers.
    crashed = cruddur("db", "down", "--immediate", env=env)
    assert crashed.returncode == 0 and "stopped" in crashed.stderr, crashed.stderr
    assert cruddur("db", "up", env=env).returncode == 0
    recovered = cruddur("db", "status", env=env)
    assert "schema    loaded (3 users, 5 activities)" in recovered.stdout


def test_status_on_a_configured_url_reports_reachability(seeded_db) -> None:
    result = cruddur("db", "status", env={"CONNECTION_URL": seeded_db})
    assert result.returncode == 0, result.stderr
    assert "reachable yes" in result.stdout
    assert "uuid_generate_v4(): uuid-ossp" in result.stdout or "stand-in" in result.stdout
    down = cruddur("db", "status", env={"CONNECTION_URL": "postgresql://u@127.0.0.1:1/x"})
    assert down.returncode == 1
    assert "reachable no" in down.stdout and "is the server running" in down.stdout


def test_status_as_a_role_that_cannot_read_the_migrations_still_says_reachable(
    api_url, lambda_url
) -> None:
    # The API's role may not read schema_migrations, the Lambda's not activities either:
    # status said "reachable no: permission denied" and exited 1, for a database that
    # answered.
    result = cruddur("db", "status", env={"CONNECTION_URL": api_url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reachable yes" in result.stdout and "schema    loaded (3 users" in result.stdout
    assert "migrations unknown: permission denied for table schema_migrations" in result.stdout
    result = cruddur("db", "status", env={"CONNECTION_URL": lambda_url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reachable yes" in result.stdout
    assert "loaded (rows not counted: permission denied for table activities" in result.stdout


def test_status_on_a_refusing_server_says_what_to_check_not_to_run_status(tmp_path) -> None:
    # The other verbs' hint sends people to `cruddur db status`; status itself names the
    # setting in use and the server behind it instead.
    local = cruddur("db", "status", env={"CONNECTION_URL": "postgresql://u@127.0.0.1:1/x"})
    assert local.returncode == 1
    assert "Connection refused" in local.stdout
    assert "cruddur db status" not in local.stdout
    assert "CONNECTION_URL" in local.stdout and "cruddur db up" in local.stdout
    prod = cruddur(
        "db",
        "status",
        "--prod",
        env={"PROD_CONNECTION_URL": "postgresql://u@127.0.0.1:1/x", "CRUDDUR_HOME": str(tmp_path)},
    )
    assert prod.returncode == 1
    assert "cruddur db status" not in prod.stdout and "cruddur db up" not in prod.stdout
    assert "PROD_CONNECTION_URL" in prod.stdout and "security group" in prod.stdout


def test_hints_name_cruddur_as_it_can_be_typed_in_the_checkout(tmp_path) -> None:
    # After bin/run, cruddur is .venv/bin/cruddur, not on the PATH: a hint's bare
    # `cruddur db up`, pasted, is "command not found".
    command = ROOT / ".venv" / "bin" / "cruddur"
    env = {"CRUDDUR_HOME": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    stopped = run(command, "db", "status", env=env, cwd=ROOT)
    refused = run(
        command, "db", "create", env={**env, "CONNECTION_URL": "postgresql://u@127.0.0.1:1/x"}
    )
    assert stopped.returncode == 1 and refused.returncode == 1
    assert "start it with `.venv/bin/cruddur db up`" in stopped.stderr, stopped.stderr
    assert ".venv/bin/cruddur db status`" in refused.stderr, refused.stderr  # from "/"
    for said in (stopped.stderr, refused.stderr):
        assert "`cruddur " not in said


@pytest.mark.skipif(_pgserver_bin() is None, reason="the pgserver wheel is not installed")
def test_pgserver_binaries_without_uuid_ossp_still_load_the_schema(home) -> None:
    env = {"CRUDDUR_HOME": str(home), "CRUDDUR_PG_BIN": str(_pgserver_bin())}
    setup = run("db-setup", env=env)
    assert setup.returncode == 0, setup.stderr
    status = cruddur("db", "status", env=env)
    assert "Debian" not in status.stdout  # not the machine's own server
    assert "stand-in over gen_random_uuid()" in status.stdout
    assert "schema    loaded (3 users, 5 activities)" in status.stdout


def test_missing_binaries_are_explained(tmp_path) -> None:
    with pytest.raises(Exception, match="no PostgreSQL server binaries"):
        find_bin_dir(tmp_path)
    result = run(
        "db-create", env={"CRUDDUR_HOME": str(tmp_path / "s"), "CRUDDUR_PG_BIN": str(tmp_path)}
    )
    assert result.returncode == 1
    assert "no PostgreSQL server binaries" in result.stderr


def test_the_server_does_not_inherit_secrets(home) -> None:
    secret = "prod-password-in-env"
    env = {"CRUDDUR_HOME": str(home), "PROD_CONNECTION_URL": f"postgresql://u:{secret}@h/d"}
    assert cruddur("db", "up", env=env).returncode == 0
    state = json.loads((home / "postgres.json").read_text())
    pid = (Path(state["cluster_dir"]) / "data" / "postmaster.pid").read_text().split()[0]
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"PROD_CONNECTION_URL" not in environ and secret.encode() not in environ


def test_a_broken_state_file_is_explained_and_data_is_kept(home) -> None:
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    assert cruddur("db", "down", env=env).returncode == 0
    state_file = home / "postgres.json"
    saved = state_file.read_text()
    data_dir = Path(json.loads(saved)["cluster_dir"]) / "data"
    state_file.write_text('{"port": 1')  # cut short
    broken = run("db-create", env=env)
    assert broken.returncode == 1
    assert "postgres.json is unreadable" in broken.stderr
    state_file.unlink()
    lost = run("db-create", env=env)
    assert lost.returncode == 1
    assert "its password is unknown" in lost.stderr
    assert (data_dir / "PG_VERSION").is_file()  # never deleted behind the user's back
    state_file.write_text(saved)  # so that the fixture can clean up


def test_a_cluster_without_pg_version_is_refused_and_kept(home) -> None:
    # A data folder partly restored or copied (no PG_VERSION yet): `db up` took it for
    # a half-made cluster of its own and removed it without a word.
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    assert cruddur("db", "down", env=env).returncode == 0
    data_dir = Path(json.loads((home / "postgres.json").read_text())["cluster_dir"]) / "data"
    (data_dir / "PG_VERSION").unlink()
    before = sorted(path.name for path in data_dir.iterdir())
    refused = cruddur("db", "up", env=env)
    assert refused.returncode == 1
    assert f"{data_dir} holds files but no PG_VERSION" in refused.stderr, refused.stderr
    assert sorted(path.name for path in data_dir.iterdir()) == before
    assert (data_dir / "global" / "pg_control").is_file()


def test_a_stale_pid_file_whose_number_another_process_has_is_not_the_server(home) -> None:
    # postmaster.pid left by a server that died, its number since another process's of
    # the server's user: `db up` said running and started nothing, and `db down` sent
    # that process SIGINT (as root: any process of the postgres user).
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    data_dir = Path(json.loads((home / "postgres.json").read_text())["cluster_dir"]) / "data"
    pid_file = data_dir / "postmaster.pid"
    lines = pid_file.read_text().splitlines(keepends=True)
    assert cruddur("db", "down", env=env).returncode == 0
    server_user = RunAs.for_current_user()
    switch: dict[str, object] = {}
    if os.geteuid() == 0:
        switch = {"user": server_user.uid, "group": server_user.gid, "extra_groups": []}
    stranger = subprocess.Popen(["sleep", "60"], **switch)
    try:
        pid_file.write_text("".join([f"{stranger.pid}\n", *lines[1:]]))  # data folder kept
        down = cruddur("db", "down", env=env)
        assert "was not running" in down.stderr, down.stderr
        assert stranger.poll() is None
        up = cruddur("db", "up", env=env)
        assert up.returncode == 0, up.stderr
        with psycopg.connect(EmbeddedPostgres(home).url("postgres"), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        down = cruddur("db", "down", env=env)
        assert "stopped" in down.stderr, down.stderr
        assert stranger.poll() is None  # never signalled
    finally:
        stranger.kill()
        stranger.wait()


@contextlib.contextmanager
def _its_port_taken_while_down(home: Path) -> Iterator[int]:
    """The home's server started and stopped, and another program listening on its port
    for the block; yields that port."""
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    assert cruddur("db", "down", env=env).returncode == 0
    old = json.loads((home / "postgres.json").read_text())["port"]
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", old))
        squatter.listen()
        yield old


def test_a_port_taken_while_the_server_was_down_says_to_restart_serve(home) -> None:
    # The server moved to another port without a word, and a `cruddur serve` running
    # kept asking the old one: 503s until someone thought of restarting it.
    env = {"CRUDDUR_HOME": str(home)}
    with _its_port_taken_while_down(home) as old:
        moved = cruddur("db", "up", env=env)
    assert moved.returncode == 0, moved.stderr
    assert f"port {old}, where it ran before, was taken" in moved.stderr
    assert "restart it" in moved.stderr
    assert json.loads((home / "postgres.json").read_text())["port"] != old


def test_any_command_that_moves_the_port_says_so(home) -> None:
    # Only `db up` said so; `db connect`, `serve` and `bin/run`'s setup moved it silently.
    env = {"CRUDDUR_HOME": str(home)}
    with _its_port_taken_while_down(home) as old:
        # (psql then finds no database `cruddur`: `db up` makes none; the start is what counts)
        moved = cruddur("db", "connect", "--", "-Atc", "SELECT 1", env=env)
    said = " ".join(moved.stderr.split())
    assert f"port {old}, where the embedded PostgreSQL ran before, was taken" in said
    assert "restart it" in said
    again = cruddur("db", "connect", "--", "-Atc", "SELECT 1", env=env)
    assert "was taken" not in again.stderr  # said once, by the start that moved it


def test_a_port_an_outgoing_connection_holds_moves_the_server_too(home) -> None:
    # The port came from the kernel's outgoing range, and only a listener read as taken:
    # held as the local end of a connection, it read as free and the start failed
    # "could not create any TCP/IP sockets", never moving.
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    assert cruddur("db", "down", env=env).returncode == 0
    old = json.loads((home / "postgres.json").read_text())["port"]
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client.bind(("127.0.0.1", old))
        client.connect(listener.getsockname())
        accepted, _ = listener.accept()
        with accepted:
            moved = cruddur("db", "up", env=env)
    assert moved.returncode == 0, moved.stderr
    assert f"port {old}, where it ran before, was taken" in moved.stderr
    assert json.loads((home / "postgres.json").read_text())["port"] != old


def test_the_first_port_is_one_no_outgoing_connection_can_take(home) -> None:
    # Picked by a bind to port 0, it came from the kernel's outgoing range: any client
    # socket could hold it while the server was down, and the server moved (above), away
    # from what knew the old port (a replica following it never caught up again).
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    port = json.loads((home / "postgres.json").read_text())["port"]
    outgoing_from = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert 1024 <= port < outgoing_from


def test_a_home_whose_path_pg_ctl_cannot_quote_is_refused_first(tmp_path) -> None:
    # pg_ctl starts the server through /bin/sh with the paths in double quotes: every
    # `db up` failed, naming a log file that never existed, after initdb had run.
    home = tmp_path / 'h"q'
    refused = cruddur("db", "up", env={"CRUDDUR_HOME": str(home)})
    assert refused.returncode == 1
    assert 'pg_ctl cannot quote " in a path' in refused.stderr, refused.stderr
    assert "set CRUDDUR_HOME to a folder" in refused.stderr
    assert not (home / "postgres" / "data").exists()
    # A $ or \\ the shell leaves as it is, in double quotes, is no reason to refuse.
    fine = tmp_path / "h\\ome$"
    try:
        started = cruddur("db", "up", env={"CRUDDUR_HOME": str(fine)})
        assert started.returncode == 0, started.stderr
    finally:
        cruddur("db", "down", env={"CRUDDUR_HOME": str(fine)})


def test_a_database_made_again_by_hand_is_the_apis_to_read(home) -> None:
    # drop, create, migrate, seed (the table's order) while bin/run served: the API's
    # role had no rights on the new tables, a 500 on every read, health all well.
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "setup", env=env).returncode == 0
    for verb in (("drop", "--force"), ("create",), ("migrate",), ("seed",)):
        done = cruddur("db", *verb, env=env)
        assert done.returncode == 0, (verb, done.stderr)
    api = EmbeddedPostgres(home).url("cruddur", role="cruddur_api")
    with psycopg.connect(api) as conn:
        assert conn.execute("SELECT count(*) FROM activities").fetchone()[0] > 0


def test_db_roles_leaves_a_role_it_did_not_make_as_it_was(home) -> None:
    # `db roles --api-role alice` gave alice (made by hand) a new password, without
    # --rotate: what logged in as alice failed. And a refused `--api-role postgres` left
    # a password for postgres in the state that the server never had.
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "setup", env=env).returncode == 0
    server = EmbeddedPostgres(home)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("CREATE ROLE alice LOGIN PASSWORD 'AlicePw123'")
    alice = with_user(server.url(), "alice", "AlicePw123")
    refused = cruddur("db", "roles", "--api-role", "alice", env=env)
    assert refused.returncode == 1
    assert 'role "alice" exists, and its password is not known here' in refused.stderr
    assert "--rotate" in refused.stderr
    psycopg.connect(alice).close()  # its password as it was
    assert cruddur("db", "roles", "--api-role", "postgres", env=env).returncode == 1
    roles = json.loads((home / "postgres.json").read_text())["roles"]
    assert "alice" not in roles and "postgres" not in roles
    # Taken and ignored, --env-file promised a file that was never written.
    elsewhere = home / "roles.env"
    ignored = cruddur("db", "roles", "--env-file", str(elsewhere), env=env)
    assert ignored.returncode == 2 and "--env-file" in ignored.stderr
    assert not elsewhere.exists()
    # Cruddur's own names are its to set: made by hand (as the tests' fixtures make them
    # on a checkout's server), `db setup` and so `bin/run` stopped on them.
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("DROP OWNED BY cruddur_api")
        conn.execute("DROP ROLE cruddur_api")
        conn.execute("CREATE ROLE cruddur_api LOGIN PASSWORD 'made-by-hand'")
    state_file = home / "postgres.json"
    state = json.loads(state_file.read_text())
    del state["roles"]["cruddur_api"]  # not the server's record: made elsewhere
    state_file.write_text(json.dumps(state))
    again = cruddur("db", "setup", env=env)
    assert again.returncode == 0, again.stderr
    psycopg.connect(server.url(role="cruddur_api")).close()
    rotated = cruddur("db", "roles", "--api-role", "alice", "--rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    psycopg.connect(server.url(role="alice")).close()  # the new one, recorded
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(alice).close()


def test_a_server_that_does_not_start_says_why(home) -> None:
    # pg_ctl's own words were all it said: "could not start server", "Examine the log
    # output", on two lines, naming no cause.
    from cruddur.embedded import EmbeddedError, EmbeddedPostgres

    with pytest.raises(EmbeddedError) as refused:
        EmbeddedPostgres(home).start({"shared_buffers": "nonsense"})
    said = str(refused.value)
    assert 'FATAL:  invalid value for parameter "shared_buffers": "nonsense"' in said, said
    assert "\n" not in said


def test_a_home_copied_while_its_server_runs_gets_a_server_of_its_own() -> None:
    # The copy carried the original's postmaster.pid, naming its live server: the copy's
    # `db up` said running and handed out that server's URL, `db create` made the
    # database there, and the copy's `db down` stopped it. (A home the server's user can
    # reach, so the cluster is inside it, as on a developer's machine.)
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="cruddur-test-copy-"))
    base.chmod(0o755)
    original, copy = base / "original", base / "copy"
    try:
        assert cruddur("db", "up", env={"CRUDDUR_HOME": str(original)}).returncode == 0
        subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
        status = cruddur("db", "status", env={"CRUDDUR_HOME": str(copy)})
        assert "embedded  not running" in status.stdout, status.stdout
        assert cruddur("db", "up", env={"CRUDDUR_HOME": str(copy)}).returncode == 0
        ports = [
            json.loads((home / "postgres.json").read_text())["port"] for home in (original, copy)
        ]
        assert ports[0] != ports[1]
        assert cruddur("db", "down", env={"CRUDDUR_HOME": str(copy)}).returncode == 0
        still = cruddur("db", "status", env={"CRUDDUR_HOME": str(original)})
        assert "embedded  running" in still.stdout, still.stdout  # the original: untouched
    finally:
        for home in (copy, original):
            cruddur("db", "down", env={"CRUDDUR_HOME": str(home)})
        shutil.rmtree(base, ignore_errors=True)


def test_a_home_moved_while_its_server_runs_keeps_that_server_alive() -> None:
    # postmaster.pid names the data folder by the path it was started from: after `mv`,
    # the moved home's `db up` took it for a copy's and removed it, then failed ("shared
    # memory block … still in use"), and the live server shut down a minute later
    # without its pid file. Now the server is found to be this folder's (its current
    # folder is this one) and `db up` says to stop it; `db down` does.
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="cruddur-test-move-"))
    base.chmod(0o755)  # the server's user reaches it: the cluster is inside the home
    before, after = base / "before", base / "after"
    pid = 0
    try:
        assert cruddur("db", "up", env={"CRUDDUR_HOME": str(before)}).returncode == 0
        before.rename(after)
        pid_file = after / "postgres" / "data" / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0])
        refused = cruddur("db", "up", env={"CRUDDUR_HOME": str(after)})
        assert refused.returncode == 1
        assert refused.stderr.startswith(
            f"error: the embedded PostgreSQL still runs from {before / 'postgres' / 'data'}, "
            "where this folder was before it moved"
        ), refused.stderr
        assert pid_file.exists()  # its pid file kept: the server lives on
        os.kill(pid, 0)
        status = cruddur("db", "status", env={"CRUDDUR_HOME": str(after)})
        assert "embedded  running" in status.stdout, status.stdout
        # Said there too (a review: status said all was well, where `db up` refused).
        assert f"it still runs from {before / 'postgres' / 'data'}" in status.stderr
        assert cruddur("db", "down", env={"CRUDDUR_HOME": str(after)}).returncode == 0
        assert not pid_file.exists()
        assert cruddur("db", "up", env={"CRUDDUR_HOME": str(after)}).returncode == 0
        assert str(after) in pid_file.read_text().splitlines()[1]  # started here now
    finally:
        for home in (after, before):
            if home.exists():
                cruddur("db", "down", env={"CRUDDUR_HOME": str(home)})
        if pid:  # one no `db down` could find (the old code's): an immediate shutdown
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(base, ignore_errors=True)


def test_a_first_start_killed_during_initdb_starts_afresh_next_time(home) -> None:
    # initdb killed (kill -9) after writing PG_VERSION, before the state had a password:
    # every later `db up` said the cluster's password was unknown and to remove it, and
    # `db status` said to run `db up`: a circle. The half-made cluster was ours.
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    assert cruddur("db", "down", env=env).returncode == 0
    state_file = home / "postgres.json"
    state = json.loads(state_file.read_text())
    data_dir = Path(state["cluster_dir"]) / "data"
    # The state as the killed run left it: its note, no password; the cluster half-made.
    state_file.write_text(json.dumps({"making": str(data_dir)}))
    (data_dir / "global" / "pg_control").unlink()
    started = cruddur("db", "up", env=env)
    assert started.returncode == 0, started.stderr
    made = json.loads(state_file.read_text())
    assert "making" not in made and made["password"] != state["password"]
    assert "embedded  running" in cruddur("db", "status", env=env).stdout


def test_a_copied_home_never_drives_the_originals_server(home, tmp_path) -> None:
    # The state names the cluster by the home's path then: a copy (`cp -a` of a checkout)
    # started, stopped and set up the original's server; a moved one found none.
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    assert cruddur("db", "down", env=env).returncode == 0
    cluster = Path(json.loads((home / "postgres.json").read_text())["cluster_dir"])
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(home), str(copy)], check=True)  # owners kept, as root
    try:
        status = cruddur("db", "status", env={"CRUDDUR_HOME": str(copy)})
        if cluster.parent.parent == SHARED_ROOT:  # as root: the cluster is outside the home
            assert status.returncode == 1
            assert "made for this home at another path (was it moved or copied?)" in (
                status.stderr
            ), status.stderr
            assert cruddur("db", "up", env={"CRUDDUR_HOME": str(copy)}).returncode == 1
        else:  # inside it: the copy has a cluster of its own
            assert f"data in {copy / 'postgres' / 'data'}" in status.stdout, status.stdout
        assert not (cluster / "data" / "postmaster.pid").exists()  # the original's: still down
    finally:
        cruddur("db", "down", env={"CRUDDUR_HOME": str(copy)})
        shutil.rmtree(copy, ignore_errors=True)


def test_advice_to_start_afresh_says_the_server_still_runs(home) -> None:
    # A review: the state file broken (or removed) while the server ran, the advice to
    # start afresh said nothing of it: followed, it left a server no command would stop.
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    state_file = home / "postgres.json"
    saved = state_file.read_text()
    data_dir = Path(json.loads(saved)["cluster_dir"]) / "data"
    pid = (data_dir / "postmaster.pid").read_text().split()[0]
    try:
        state_file.write_text('{"port": 1')  # cut short
        broken = run("db-create", env=env)
        assert broken.returncode == 1
        said = " ".join(broken.stderr.split())
        assert "postgres.json is unreadable" in said and f"still runs (pid {pid})" in said, said
        state_file.unlink()
        lost = run("db-create", env=env)
        assert lost.returncode == 1
        said = " ".join(lost.stderr.split())
        assert "its password is unknown" in said and f"still runs (pid {pid})" in said, said
    finally:  # put back, for the fixture to stop the server and remove its cluster
        state_file.write_text(saved)
        state_file.chmod(0o600)


@pytest.mark.parametrize(
    "text",
    ['{"port": "x", "password": "p"}', "[]", '{"port": 70000}', '{"roles": {"a": 1}}', "null"],
)
def test_a_state_file_of_the_wrong_shape_is_explained(tmp_path, text: str) -> None:
    # JSON that decodes, but not to what cruddur wrote: it ended in "unexpected
    # ValueError: invalid literal for int()" or "'list' object has no attribute 'get'".
    home = tmp_path / "state"
    home.mkdir(mode=0o700)
    state_file = home / "postgres.json"
    state_file.write_text(text)
    state_file.chmod(0o600)
    broken = cruddur("db", "status", env={"CRUDDUR_HOME": str(home)})
    assert broken.returncode == 1
    assert f"error: {state_file} is unreadable: remove it" in broken.stderr, broken.stderr
    assert "unexpected" not in broken.stderr


def test_down_on_a_home_that_does_not_exist_makes_nothing_and_says_so(tmp_path) -> None:
    # `db down` with a misspelt CRUDDUR_HOME made the folder (and a lock file in it), then
    # said "data kept in …/postgres/data", a folder that did not exist either.
    home = tmp_path / "typo" / "state"
    down = cruddur("db", "down", env={"CRUDDUR_HOME": str(home)})
    assert down.returncode == 0, down.stderr
    assert f"no embedded PostgreSQL in {home}: nothing to stop" in down.stderr
    assert "data kept" not in down.stderr
    assert not (tmp_path / "typo").exists()


def test_a_failed_start_gives_its_own_reason_not_an_older_fatal_line(home) -> None:
    # The log's last FATAL line was given as the reason, however old: a session's
    # "database does not exist" from days before, where this start failed for another.
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    assert cruddur("db", "down", env=env).returncode == 0
    server = EmbeddedPostgres(home)
    with server.log_file.open("a") as log:
        log.write('2026-12-01 00:00:00 UTC [1] FATAL:  database "gone" does not exist\n')
    with pytest.raises(Exception, match="superuser_reserved_connections") as failed:
        server.start({"max_connections": "1"})  # refused by the server, in its log
    assert "gone" not in str(failed.value)


def test_a_home_under_a_file_is_one_line(tmp_path) -> None:
    (tmp_path / "afile").write_text("")
    for verb in ("status", "down", "up"):
        refused = cruddur("db", verb, env={"CRUDDUR_HOME": str(tmp_path / "afile" / "home")})
        assert refused.returncode == 1, refused.stderr
        assert "unexpected" not in refused.stderr, refused.stderr
        assert "afile" in refused.stderr


def test_a_start_after_a_crash_names_the_old_servers_processes_still_at_work(home) -> None:
    # A review: the postmaster killed while a backend ran a long query, `db up` said
    # only "pre-existing shared memory block … is still in use" (its HINT dropped), and
    # nothing named the process to end.
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    data_dir = Path(json.loads((home / "postgres.json").read_text())["cluster_dir"]) / "data"
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    busy = psycopg.connect(EmbeddedPostgres(home).url("postgres"), autocommit=True)
    backend = busy.info.backend_pid

    def at_work() -> None:  # CPU-bound: it never looks for its postmaster
        with contextlib.suppress(psycopg.Error):
            busy.execute("SELECT count(*) FROM generate_series(1, 10000000000)")

    worker = threading.Thread(target=at_work, daemon=True)
    worker.start()
    time.sleep(0.5)
    os.kill(postmaster, signal.SIGKILL)
    try:
        refused = cruddur("db", "up", env=env)
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 1, said
        assert "HINT: Terminate any old server processes" in said, said
        assert f"still run in its folder (pid {backend})" in said and f"kill {backend}" in said
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(backend, signal.SIGKILL)
        worker.join(timeout=10)
        busy.close()
    assert cruddur("db", "up", env=env).returncode == 0  # recovers once it is gone


def test_a_failed_start_is_said_in_the_servers_words_or_pg_ctls(tmp_path) -> None:
    from cruddur.embedded import _why_not_started

    log = tmp_path / "postgres.log"
    log.write_text('old FATAL:  database "gone" does not exist\n')
    since = log.stat().st_size
    generic = "pg_ctl: could not start server\nExamine the log output."
    with log.open("a") as more:
        more.write("LOG:  starting PostgreSQL\nLOG:  listening on IPv4 address\n")
    # No FATAL since: pg_ctl's own word when it says more than "examine the log" (a
    # recovery under way past its 60 s was given as a random LOG line).
    timed_out = "pg_ctl: server did not start in time"
    assert _why_not_started(log, since, timed_out) == timed_out
    assert _why_not_started(log, since, generic) == "LOG:  listening on IPv4 address"
    with log.open("a") as more:
        more.write("2026 UTC [7] FATAL:  could not bind\n")
    assert _why_not_started(log, since, timed_out) == "FATAL:  could not bind"
    assert _why_not_started(tmp_path / "none.log", 0, generic) == generic
    # A review: the HINT after it, the line saying what to do, was dropped.
    with log.open("a") as more:
        more.write(
            "2026 UTC [8] FATAL:  pre-existing shared memory block (key 1, ID 2) is still in use\n"
            "2026 UTC [8] HINT:  Terminate any old server processes associated with data "
            'directory "/x".\n'
        )
    assert _why_not_started(log, since, timed_out) == (
        "FATAL:  pre-existing shared memory block (key 1, ID 2) is still in use HINT:  "
        'Terminate any old server processes associated with data directory "/x".'
    )


def test_an_empty_pid_file_reads_as_not_running(home) -> None:
    # pg_ctl's status 1 ("the PID file is empty") became an error with no advice.
    env = {"CRUDDUR_HOME": str(home)}
    assert cruddur("db", "up", env=env).returncode == 0
    assert cruddur("db", "down", env=env).returncode == 0
    pid_file = EmbeddedPostgres(home).data_dir / "postmaster.pid"
    pid_file.write_text("")
    try:
        status = cruddur("db", "status", env=env)
        assert "embedded  not running" in status.stdout, status.stdout + status.stderr
        assert "cannot tell" not in status.stderr and "unexpected" not in status.stderr
    finally:
        pid_file.unlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="binaries are copied for the server user as root")
def test_two_first_starts_copying_the_same_binaries_both_take_a_copy(tmp_path) -> None:
    # A review: two homes' first `db up` at once, with binaries in a folder private to
    # root, both copied them; the second's rename failed ("unexpected OSError: Directory
    # not empty") and left its staging folder in /var/lib/cruddur.
    from unittest import mock

    from cruddur import embedded

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    bin_dir = private / "pgserver" / "pginstall" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "postgres").write_text("#!/bin/sh\n")
    (bin_dir / "postgres").chmod(0o755)
    copy = embedded._shared_path("bin", bin_dir)
    copytree = shutil.copytree

    def the_other_start_finishes_first(source, target, *args, **kwargs):
        made = copytree(source, target, *args, **kwargs)
        if not copy.exists():  # the other home's copy, renamed into place meanwhile
            copytree(bin_dir.parent.parent, copy / "pgserver")
        return made

    before = set(SHARED_ROOT.iterdir()) if SHARED_ROOT.exists() else set()
    try:
        with mock.patch.object(embedded.shutil, "copytree", the_other_start_finishes_first):
            found = embedded._reachable_bin_dir(embedded.RunAs.for_current_user(), bin_dir)
        assert found == copy / "pgserver" / "pginstall" / "bin"
        assert (found / "postgres").is_file()
        assert set(SHARED_ROOT.iterdir()) - before == {copy}  # no staging folder left
    finally:
        shutil.rmtree(copy, ignore_errors=True)
