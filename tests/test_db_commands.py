"""Every `bin/db-*` script (and so every `cruddur db` verb) against a real server."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from helpers import BIN, CRUDDUR, ROOT, as_role, cli, database_exists, run, tables
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cruddur.cli import main
from cruddur.db import Db
from cruddur.ops import databases
from cruddur.ops.migrations import runner
from cruddur.ops.migrations.files import package_dir
from cruddur.urls import database_name, with_database

SCRIPTS = [
    "db-connect",
    "db-create",
    "db-drop",
    "db-kill-all",
    "db-schema-load",
    "db-seed",
    "db-sessions",
    "db-setup",
    "db-migrate",
    "db-rollback",
    "db-migrations",
    "db-new-migration",
]


def local(url: str) -> dict[str, str]:
    return {"CONNECTION_URL": url}


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_and_explains_itself(script: str) -> None:
    path = BIN / script
    assert path.stat().st_mode & stat.S_IXUSR
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert re.search(r"Usage: \S*cruddur db", result.stdout), result.stdout
    assert f"== {script}" in result.stderr  # the header names the script


def test_create_makes_the_database_and_is_idempotent(admin, server_url, new_db_name) -> None:
    name = new_db_name()
    url = f"{server_url.replace('dbname=postgres', '')} dbname={name}"
    first = run("db-create", env=local(url))
    assert first.returncode == 0, first.stderr
    assert f'created database "{name}"' in first.stderr
    assert database_exists(admin, name)
    again = run("db-create", env=local(url))
    assert again.returncode == 0, again.stderr
    assert "already exists; nothing to do" in again.stderr


@pytest.mark.parametrize(
    "script",
    [("db-create",), ("db-drop", "--yes"), ("db-setup", "--yes"), ("db-kill-all", "--yes")],
    ids=lambda script: script[0],
)
def test_a_database_name_longer_than_postgresql_keeps_is_refused(
    admin, server_url, new_db_name, script: tuple[str, ...]
) -> None:
    # PostgreSQL cut the name to 63 bytes and `db create` said it had made the long one.
    name = new_db_name() + "_" + "x" * 50  # 76 bytes; the fixture drops it were it made
    cut = name[:63]
    url = f"{server_url.replace('dbname=postgres', '')} dbname={name}"
    try:
        result = cli(*script, env=local(url))
        made = database_exists(admin, cut)
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(cut)))
    assert result.returncode == 1, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert said == [
        f"error: the database name {name!r} is 76 bytes long (UTF-8); PostgreSQL names are "
        "at most 63 bytes, and it would cut this one to its first 63"
    ]
    assert not made


def test_drop_removes_the_database_and_a_missing_one_is_fine(admin, empty_db) -> None:
    name = database_name(empty_db)
    result = cli("db-drop", env=local(empty_db))
    assert result.returncode == 0, result.stderr
    assert not database_exists(admin, name)
    again = cli("db-drop", env=local(empty_db))
    assert again.returncode == 0
    assert "does not exist; nothing to drop" in again.stderr


def test_drop_with_open_sessions_says_how_many_and_force_drops(admin, empty_db) -> None:
    name = database_name(empty_db)
    with psycopg.connect(empty_db), psycopg.connect(empty_db):
        refused = cli("db-drop", env=local(empty_db))
        assert refused.returncode == 1
        assert f'2 other sessions are connected to database "{name}"' in refused.stderr
        assert "--force" in refused.stderr
        assert database_exists(admin, name)
        forced = cli("db-drop", "--force", env=local(empty_db))
        assert forced.returncode == 0, forced.stderr
    assert not database_exists(admin, name)


def test_schema_load_creates_the_tables_and_can_run_twice(empty_db) -> None:
    for _ in range(2):
        result = cli("db-schema-load", env=local(empty_db))
        assert result.returncode == 0, result.stderr
    assert tables(empty_db) == {"users", "activities", "idempotency_keys", "schema_migrations"}


def test_seed_loads_the_sample_rows(empty_db) -> None:
    assert cli("db-schema-load", env=local(empty_db)).returncode == 0
    result = cli("db-seed", env=local(empty_db))
    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_db) as conn:
        handles = {r[0] for r in conn.execute("SELECT handle FROM users").fetchall()}
        message = conn.execute(
            "SELECT expires_at - created_at > interval '9 days' FROM activities"
            " WHERE message = 'This was imported as seed data!'"
        ).fetchone()
    assert {"andrewbrown", "bayko"} <= handles
    assert message == (True,)


def test_seed_posts_only_as_its_own_users(empty_db) -> None:
    # Its cruds found their authors by handle alone: someone else with the handle londo
    # (a real user, or a fake one) had the seed's words posted as theirs.
    assert cli("db-schema-load", env=local(empty_db)).returncode == 0
    with psycopg.connect(empty_db) as conn:
        conn.execute(
            "INSERT INTO users (display_name, handle, email, cognito_user_id)"
            " VALUES ('Someone Else', 'londo', 'else@example.com', 'real-sub-1'),"
            "        ('Another', 'AndrewBrown', 'other@example.com', 'real-sub-2')"
        )
    result = cli("db-seed", env=local(empty_db))
    assert result.returncode == 0, result.stderr
    assert "@andrewbrown is another user's" in result.stderr
    assert "its cruds and the replies to them were left out" in result.stderr
    assert "@londo is another user's" in result.stderr and "@bayko" not in result.stderr
    with psycopg.connect(empty_db) as conn:
        theirs = conn.execute(
            "SELECT count(*) FROM activities JOIN users ON users.uuid = activities.user_uuid"
            " WHERE users.cognito_user_id LIKE 'real-sub-%'"
        ).fetchone()[0]
        bayko = conn.execute(
            "SELECT count(*) FROM activities JOIN users ON users.uuid = activities.user_uuid"
            " WHERE users.handle = 'bayko'"
        ).fetchone()[0]
    assert theirs == 0
    assert bayko == 1  # its expired crud; its reply went with the crud left out
    again = cli("db-seed", env=local(empty_db))  # and again changes nothing
    assert again.returncode == 0 and snapshot_counts(empty_db) == (3, 1)


def test_seed_takes_its_own_user_under_a_handle_in_another_case(empty_db) -> None:
    # AndrewBrown with the seed's own email is the seed's user (a sign-up so spelled).
    assert cli("db-schema-load", env=local(empty_db)).returncode == 0
    with psycopg.connect(empty_db) as conn:
        conn.execute(
            "INSERT INTO users (display_name, handle, email, cognito_user_id)"
            " VALUES ('Andrew Brown', 'AndrewBrown', 'Andrew@ExamPro.co', 'real-sub-3')"
        )
    result = cli("db-seed", env=local(empty_db))
    assert result.returncode == 0 and "another user's" not in result.stderr, result.stderr
    with psycopg.connect(empty_db) as conn:
        (author,) = conn.execute(
            "SELECT users.handle FROM activities JOIN users ON users.uuid = activities.user_uuid"
            " WHERE activities.uuid = '5eed0000-0000-4000-8000-000000000001'"
        ).fetchone()
    assert author == "AndrewBrown"


def snapshot_counts(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        return (
            conn.execute("SELECT count(*) FROM users").fetchone()[0],
            conn.execute("SELECT count(*) FROM activities").fetchone()[0],
        )


def test_sessions_lists_pid_user_database_and_application(empty_db) -> None:
    with psycopg.connect(empty_db, application_name="sessions-probe") as conn:
        pid = conn.info.backend_pid
        result = cli("db-sessions", env=local(empty_db))
    assert result.returncode == 0, result.stderr
    line = next(row for row in result.stdout.splitlines() if "sessions-probe" in row)
    assert str(pid) in line
    assert database_name(empty_db) in line
    for heading in ("pid", "user", "database", "client address", "application", "state"):
        assert heading in result.stdout


def test_sessions_piped_are_tab_separated_lines_with_every_name_whole(empty_db) -> None:
    # Piped, rich drew its table 80 columns wide: the application read "cruddur-feed-li…".
    app = "cruddur-feed-listener-with-a-long-name-on-host-7"
    with psycopg.connect(empty_db, application_name=app) as conn:
        pid = conn.info.backend_pid
        result = run("db-sessions", env={**local(empty_db), "COLUMNS": "80"})  # a pipe
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "pid\tuser\tdatabase\tclient address\tapplication\tstate"
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == 6 for row in rows), lines
    mine = next(row for row in rows if row[0] == str(pid))
    assert mine[2] == database_name(empty_db) and mine[4] == app


def test_sessions_shows_control_characters_in_names_as_escapes(admin, empty_db) -> None:
    # A database's name is anyone's text (PostgreSQL keeps ESC in it; ESC [ 7 m would turn
    # the terminal's colours around), so it is shown as an escape.
    name = f"{database_name(empty_db)}_\x1b[7m"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(with_database(empty_db, name)):
            result = cli("db-sessions", env=local(empty_db))
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "_\\x1b[7m" in result.stdout


def test_kill_all_on_a_database_that_does_not_exist_says_so(empty_db) -> None:
    # A review: "disconnected 0 sessions", for a mistyped name.
    missing = with_database(empty_db, f"{database_name(empty_db)}_missing")
    result = cli("db-kill-all", env=local(missing))
    assert result.returncode == 0, result.stderr
    assert "does not exist; no session to end" in result.stderr
    assert "disconnected" not in result.stderr


def test_kill_all_disconnects_other_sessions(empty_db) -> None:
    conn = psycopg.connect(empty_db)
    result = cli("db-kill-all", env=local(empty_db))
    assert result.returncode == 0, result.stderr
    assert "disconnected 1 session" in result.stderr
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()


@contextmanager
def _owned_by_a_plain_role(
    admin: psycopg.Connection, database_url: str
) -> Iterator[tuple[str, str]]:
    """The database made over to a new login role with CREATEDB, and nothing more (no
    superuser, pg_read_all_stats or pg_signal_backend): the role, and the database's URL
    as that role. The database and the role are dropped after."""
    owner = f"cruddur_t_owner_{uuid.uuid4().hex[:8]}"
    name = database_name(database_url)
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD 'owner-pw'").format(sql.Identifier(owner))
    )
    try:
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
        yield owner, as_role(database_url, owner, "owner-pw")
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))


def test_a_plain_owner_sees_counts_and_leaves_other_roles_sessions(admin, empty_db) -> None:
    # As the database's owner, not a superuser: PostgreSQL hides other roles' sessions'
    # backend_type, and the verbs filtered on it. `db sessions` showed none of them,
    # kill-all said "disconnected 0 sessions" and left them, drop failed on "being
    # accessed by other users" and drop --force on "must be a superuser to terminate".
    name = database_name(empty_db)
    other = f"cruddur_t_other_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'other-pw'").format(sql.Identifier(other)))
    try:
        with _owned_by_a_plain_role(admin, empty_db) as (owner_role, owner_url):
            owner = psycopg.connect(owner_url)
            superuser = psycopg.connect(empty_db, application_name="superuser-probe")
            plain = psycopg.connect(as_role(empty_db, other, "other-pw"))
            try:
                listed = run("db-sessions", env=local(owner_url))  # piped: tab-separated
                assert listed.returncode == 0, listed.stderr
                rows = {row.split("\t")[0]: row.split("\t") for row in listed.stdout.splitlines()}
                hidden = rows[str(superuser.info.backend_pid)]
                assert hidden[2] == name and hidden[4] == "superuser-probe"
                assert hidden[5] == "(another role's)"
                assert rows[str(plain.info.backend_pid)][1] == other
                assert rows[str(owner.info.backend_pid)][5] == "idle"  # its own: all of it
                assert "of other roles: this role may not see their state" in listed.stderr

                refused = cli("db-drop", env=local(owner_url))
                assert refused.returncode == 1
                assert f'3 other sessions are connected to database "{name}"' in refused.stderr
                assert "2 are other roles', which this role may not end" in refused.stderr

                forced = cli("db-drop", "--force", env=local(owner_url))
                assert forced.returncode == 1
                assert (
                    f'error: 2 sessions of other roles are connected to database "{name}": '
                    "this role may not end them"
                ) in forced.stderr
                assert "only a superuser may end the 1 of a superuser role" in forced.stderr
                assert database_exists(admin, name)

                kept = cli("db-kill-all", env=local(owner_url))
                assert kept.returncode == 1
                assert "disconnected 1 session\n" in kept.stderr  # its own, not the server's
                assert "2 sessions of other roles are still connected" in kept.stderr
                assert superuser.execute("SELECT 1").fetchone() == (1,)
                assert plain.execute("SELECT 1").fetchone() == (1,)
                with pytest.raises(psycopg.OperationalError):
                    owner.execute("SELECT 1")

                # A member of pg_signal_backend ends the plain role's, not the superuser's.
                admin.execute(
                    sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(owner_role))
                )
                signalled = cli("db-kill-all", env=local(owner_url))
                assert signalled.returncode == 1
                assert "disconnected 1 session\n" in signalled.stderr
                assert "1 session of another role is still connected" in signalled.stderr
                assert "only a superuser may end it" in signalled.stderr
                with pytest.raises(psycopg.OperationalError):
                    plain.execute("SELECT 1")
                assert superuser.execute("SELECT 1").fetchone() == (1,)
            finally:
                for conn in (owner, superuser, plain):
                    conn.close()
    finally:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(other)))


def test_setup_builds_a_fresh_database(admin, server_url, new_db_name) -> None:
    name = new_db_name()
    url = f"{server_url.replace('dbname=postgres', '')} dbname={name}"
    result = run("db-setup", env=local(url))
    assert result.returncode == 0, result.stderr
    assert "applied 20261201000000_initial_schema.sql" in result.stderr  # setup migrates
    assert tables(url) == {"users", "activities", "idempotency_keys", "schema_migrations"}
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM activities")
    again = run("db-setup", env=local(url))  # drops and reloads: the seed is back
    assert again.returncode == 0, again.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM activities").fetchone()[0] > 0


def test_setup_if_missing_keeps_an_existing_database(seeded_db) -> None:
    with psycopg.connect(seeded_db) as conn:
        conn.execute("DELETE FROM activities")
    result = cli("db-setup", "--if-missing", env=local(seeded_db))
    assert result.returncode == 0, result.stderr
    assert "schema up to date" in result.stderr and "not seeded" in result.stderr
    with psycopg.connect(seeded_db) as conn:
        assert conn.execute("SELECT count(*) FROM activities").fetchone()[0] == 0


@pytest.mark.parametrize("database", ["template1", "postgres"])
def test_no_verb_changes_a_system_database(database: str) -> None:
    # A review: `db setup --if-missing` on template1 loaded the schema, the seed and the
    # grants there, and every database made afterwards came with them. Refused before
    # connecting: the server here is never reached.
    url = f"postgresql://postgres@127.0.0.1:1/{database}"
    for verb in (
        ["db", "setup"], ["db", "setup", "--if-missing"], ["db", "schema-load"],
        ["db", "seed"], ["db", "seed", "--fake", "--users", "1"], ["db", "migrate"],
        ["db", "rollback"], ["db", "roles"],
    ):  # fmt: skip
        result = cli(CRUDDUR, *verb, env=local(url))
        assert result.returncode == 1, (verb, result.stderr)
        assert f'the system database "{database}"' in result.stderr, (verb, result.stderr)
        assert "connection refused" not in result.stderr.lower(), verb


def test_setup_stops_at_the_first_failure(server_url) -> None:
    unreachable = "postgresql://postgres@127.0.0.1:1/cruddur"
    result = cli("db-setup", env=local(unreachable))
    assert result.returncode == 1
    assert "created" not in result.stderr and "schema.sql" not in result.stderr


def test_setup_stops_partway_and_does_not_seed(empty_db, login_role) -> None:
    # The role may connect but not create tables: the schema step fails, seed never runs.
    url = as_role(empty_db, login_role, "right-password")
    result = cli("db-setup", "--if-missing", env=local(url))
    assert result.returncode == 1
    assert "exists, no schema" in result.stderr  # the steps before it ran
    assert "_initial_schema.sql:" in result.stderr and "permission denied" in result.stderr
    assert "seed.sql" not in result.stderr and "is ready" not in result.stderr
    assert tables(empty_db) == set()


def _client_ports(pid: int) -> list[int]:
    """The local ports of process `pid`'s TCP sockets (from /proc: its descriptors' socket
    inodes, looked up in the kernel's tables)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_ctrl_c_in_setup_after_its_drop_says_what_the_database_is_left_as(
    seeded_db, server_url
) -> None:
    # After the drop it said only "interrupted (Ctrl-C)": nothing told that the database
    # was dropped, or half built, nor what to run. Its roles step waits here on the lock
    # the roles' changes take (per database: the maintenance one, where setup takes it).
    env = {k: v for k, v in os.environ.items() if not k.endswith("CONNECTION_URL")}
    env.update(NO_COLOR="1", CONNECTION_URL=seeded_db)
    with psycopg.connect(server_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('cruddur roles'))")
        setting_up = subprocess.Popen(
            [ROOT / ".venv" / "bin" / "cruddur", "db", "setup"],
            env=env, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        # Its lines as they come: another test's command waiting on the same lock (this
        # one holds it) looked like this one waiting, and the Ctrl-C came right after the
        # drop (a full run, 2026-12-07). It is sent once this one has made the database.
        lines: list[str] = []
        assert setting_up.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(setting_up.stderr), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60
            # Its own session waiting, found by the client ports it holds: another test's
            # `db setup` waiting on the lock too (a CI run, 2026-12-07 evening) was taken
            # for it, and the Ctrl-C landed between the migrations and the seed.
            while not (
                any("created database" in line for line in lines)
                and holder.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = 'cruddur-cli'"
                    " AND wait_event = 'advisory' AND client_port = ANY(%s)",
                    [_client_ports(setting_up.pid)],
                ).fetchone()
            ):
                assert setting_up.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, "the roles step never waited"
                time.sleep(0.02)
            os.killpg(setting_up.pid, signal.SIGINT)
            setting_up.wait(timeout=30)
            reader.join(timeout=30)
            err = "".join(lines)
        finally:
            if setting_up.poll() is None:
                setting_up.kill()
    assert setting_up.returncode == 130, err
    name = database_name(seeded_db)
    # Its last step takes that lock: the roles' own, or on a server whose roles are made
    # already, the migrations' grants to them just before (after each migration: after
    # the first, it says "1 migration applied", as a CI run found).
    (said,) = [line for line in err.splitlines() if "interrupted:" in line]
    assert said.endswith("; run `bin/db-setup` again to finish"), err
    assert f'"{name}" has its schema and seed, but its roles were not set up' in said or re.search(
        f'"{name}" was dropped and made again, empty, then [0-9]+ migrations? applied, not seeded',
        said,
    ), err
    assert "Traceback" not in err


def test_ctrl_c_in_setup_if_missing_before_its_seed_says_to_seed_too(empty_db) -> None:
    # It said to run `bin/db-setup --if-missing` again "to finish": that run found the
    # schema there and seeded nothing. The migrations wait here on their lock, held.
    from cruddur.ops.migrations.lock import LOCK_KEY

    env = {k: v for k, v in os.environ.items() if not k.endswith("CONNECTION_URL")}
    env.update(NO_COLOR="1", CONNECTION_URL=empty_db)
    with psycopg.connect(empty_db, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        setting_up = subprocess.Popen(
            [ROOT / ".venv" / "bin" / "cruddur", "db", "setup", "--if-missing"],
            env=env, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            err, deadline = "", time.monotonic() + 60
            while "waiting up to" not in err:
                assert setting_up.poll() is None
                assert time.monotonic() < deadline, "it never waited for the lock"
                err += setting_up.stderr.readline()
            os.killpg(setting_up.pid, signal.SIGINT)
            err += setting_up.communicate(timeout=30)[1]
        finally:
            if setting_up.poll() is None:
                setting_up.kill()
    assert setting_up.returncode == 130, err
    assert "run `bin/db-setup --if-missing` again, then `bin/db-seed`, to finish" in err, err


def test_setup_refuses_a_role_that_could_not_create_the_database_again(
    admin, seeded_db, login_role
) -> None:
    # The owner of a database may drop it without CREATEDB: setup dropped it, then
    # failed to create it ("permission denied to create database"), and it was gone.
    name = sql.Identifier(database_name(seeded_db))
    admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(name, sql.Identifier(login_role)))
    try:
        result = cli("db-setup", env=local(as_role(seeded_db, login_role, "right-password")))
        assert result.returncode == 1
        assert f'error: role "{login_role}" lacks CREATEDB' in result.stderr
        assert "nothing was done" in result.stderr and "dropped" not in result.stderr
        with psycopg.connect(seeded_db) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 3
        # The roles step's power is checked too: CREATEROLE, for a role not made yet.
        admin.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(login_role)))
        with Db(as_role(seeded_db, login_role, "right-password"), autocommit=True) as server:
            missing = databases.missing_powers(server, ["fix_no_such_role"])
            assert missing == (f'role "{login_role}" lacks CREATEROLE (to make fix_no_such_role)')
    finally:
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(name))


@pytest.mark.parametrize("prod", [True, False])
def test_setup_checks_the_migrations_before_it_drops_anything(
    seeded_db, tmp_path, monkeypatch, prod: bool
) -> None:
    # An unfinished migration (`db new` writes one with an empty up section) stopped
    # setup after its drop: production, once confirmed, was left empty.
    folder = tmp_path / "migrations"
    shutil.copytree(package_dir(), folder)
    (folder / "29990101000000_unfinished.sql").write_text("-- migrate:up\n\n-- migrate:down\n")
    monkeypatch.setattr(runner, "package_dir", lambda: folder)  # setup has no --migrations-dir
    setting = "PROD_CONNECTION_URL" if prod else "CONNECTION_URL"
    env = {"CONNECTION_URL": None, "PROD_CONNECTION_URL": None, setting: seeded_db}
    args = ["db", "setup", *(["--prod", "--yes"] if prod else [])]
    result = CliRunner(env=env).invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "29990101000000_unfinished.sql: the up section has no statement" in result.output
    assert "dropped" not in result.output
    with psycopg.connect(seeded_db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 3


def test_status_names_an_unfinished_migration_and_does_not_say_migrate_applies_it(
    seeded_db, tmp_path, monkeypatch
) -> None:
    # A review: an unfinished `db new` file made the migrations "unknown", and with a
    # file edited since applied status still said `bin/db-migrate` applies the pending
    # ones, which migrate refuses to do.
    folder = tmp_path / "migrations"
    shutil.copytree(package_dir(), folder)
    (folder / "29990101000000_unfinished.sql").write_text("-- migrate:up\n\n-- migrate:down\n")
    monkeypatch.setattr(runner, "package_dir", lambda: folder)
    env = {"CONNECTION_URL": seeded_db, "PROD_CONNECTION_URL": None}
    result = CliRunner(env=env).invoke(main, ["db", "status"])
    assert result.exit_code == 0, result.output
    assert "1 pending, 1 unfinished (29990101000000_unfinished.sql" in result.output
    assert "(`bin/db-migrations` says what stops `bin/db-migrate`)" in result.output
    assert "applies them" not in result.output


def test_names_with_markup_characters_print_as_themselves(admin, server_url, new_db_name) -> None:
    name = new_db_name() + "_x[/y]"
    url = with_database(server_url, name)
    try:
        result = cli("db-create", env=local(url))
        assert result.returncode == 0, result.stderr
        assert f'created database "{name}"' in result.stderr
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def test_connect_opens_psql_on_the_database(seeded_db) -> None:
    result = run(
        "db-connect",
        stdin="SELECT current_database(), count(*) FROM users;\n",
        env=local(seeded_db),
    )
    assert result.returncode == 0, result.stderr
    assert database_name(seeded_db) in result.stdout
    assert "3" in result.stdout


def test_connect_passes_psql_arguments(seeded_db) -> None:
    result = run(
        "db-connect",
        "--",
        "-tAc",
        "SELECT handle FROM users ORDER BY handle LIMIT 1",
        env=local(seeded_db),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "andrewbrown"


def test_connect_keeps_secret_options_off_psqls_command_line(seeded_db) -> None:
    # The sslpassword went into --dbname=…, where `ps` shows it to every user.
    secret = "s3cretE"
    url = make_conninfo(seeded_db, sslpassword=secret)
    env = {k: v for k, v in os.environ.items() if k != "PROD_CONNECTION_URL"}
    env.update(NO_COLOR="1", CONNECTION_URL=url)
    command = [str(BIN / "db-connect"), "--", "-tAc", "SELECT pg_sleep(2), 'connected'"]
    psql = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc = Path(f"/proc/{psql.pid}")  # bin/db-connect and cruddur exec psql in turn
        deadline = time.monotonic() + 20
        while Path((proc / "cmdline").read_bytes().split(b"\0")[0].decode()).name != "psql":
            assert time.monotonic() < deadline and psql.poll() is None, psql.communicate()[1]
            time.sleep(0.02)
        cmdline = (proc / "cmdline").read_bytes()
        environ = dict(
            line.split(b"=", 1) for line in (proc / "environ").read_bytes().split(b"\0") if line
        )
        given = Path(environ.get(b"PGSERVICEFILE", b"").decode())
        service_file = (proc / "fd" / given.name).read_text() if given.name else ""
        out, err = psql.communicate(timeout=20)
    finally:
        if psql.poll() is None:
            psql.kill()
    assert psql.returncode == 0, err
    assert out.decode().strip() == "|connected"  # psql read the service file and connected
    assert b"sslpassword" not in cmdline and secret.encode() not in cmdline, cmdline
    assert b"service=cruddur" in cmdline
    # In no variable of its own: only the one psql was handed anyway, owner-only.
    assert [k for k, v in environ.items() if secret.encode() in v] == [b"CONNECTION_URL"]
    assert f"sslpassword={secret}" in service_file.splitlines()


def test_a_migration_may_be_called_prod(tmp_path) -> None:
    # `db new` has no target: its first argument is the NAME.
    made = run("db-new-migration", "prod", "--migrations-dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert [path.name.split("_", 1)[1] for path in tmp_path.iterdir()] == ["prod.sql"]


def test_only_the_target_position_becomes_prod(seeded_db) -> None:
    # After --, prod is psql's (a user name there, which --dbname's conninfo overrides),
    # not the target.
    passed = run("db-connect", "--", "-tAc", "SELECT 1", "prod", env=local(seeded_db))
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.strip() == "1"


def test_a_shell_in_a_removed_folder_gets_the_command_done(empty_db, tmp_path) -> None:
    # A shell left in a folder since removed (a worktree, a temp dir): looking for .env
    # there ended every command in "unexpected FileNotFoundError".
    gone = tmp_path / "gone"
    gone.mkdir()
    script = f'cd "{gone}" && rmdir "{gone}" && exec "{BIN}/db-create"'
    env = {
        k: v for k, v in os.environ.items() if k not in ("CONNECTION_URL", "PROD_CONNECTION_URL")
    }
    result = subprocess.run(
        ["bash", "-c", script],
        env={**env, "NO_COLOR": "1", **local(empty_db)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "already exists; nothing to do" in result.stderr


def test_scripts_run_from_any_directory(empty_db, tmp_path) -> None:
    link = tmp_path / "db-schema-load"
    link.symlink_to(BIN / "db-schema-load")  # called through a link, from elsewhere
    result = run(link, env=local(empty_db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "users" in tables(empty_db)


def test_header_is_coloured_on_request_and_plain_otherwise() -> None:
    coloured = run("db-sessions", "--help", env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert "\x1b[1;36m== db-sessions\x1b[0m" in coloured.stderr
    plain = run("db-sessions", "--help")
    assert "\x1b[" not in plain.stderr


def test_cruddur_help_lists_every_verb() -> None:
    result = run(ROOT / ".venv" / "bin" / "cruddur", "db", "--help")
    assert result.returncode == 0
    listed = result.stdout.split("Commands:")[1].split()
    for verb in (
        "connect",
        "create",
        "drop",
        "kill-all",
        "schema-load",
        "seed",
        "sessions",
        "setup",
        "status",
        "up",
        "down",
        "migrate",
        "rollback",
        "migrations",
        "new",
    ):
        assert verb in listed


def test_two_creates_of_one_database_at_once_both_succeed(server_url, new_db_name) -> None:
    # The loser of the race between `exists` and CREATE DATABASE is usually told of a
    # unique violation on pg_database's name, not DuplicateDatabase: `db create` (and
    # `db setup --if-missing`, which bin/run runs) failed with SQLSTATE 23505.
    def create(name: str, barrier: threading.Barrier, results: list[object]) -> None:
        with Db(server_url, autocommit=True) as server:
            barrier.wait()
            try:
                results.append(databases.create(server, name))
            except Exception as exc:  # said by the assertion below, not lost in the thread
                results.append(exc)

    for _ in range(8):
        name, barrier, results = new_db_name(), threading.Barrier(2), []
        threads = [threading.Thread(target=create, args=(name, barrier, results)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(results, key=str) == [False, True], results


def test_a_reader_that_goes_away_ends_the_command_with_sigpipes_status(seeded_db) -> None:
    # `db status | head -1` exited 1, the status the README gives for a database that
    # does not answer: click turns a broken pipe into 1. Now 141 (128 + SIGPIPE), as
    # shell tools end, and nothing on stderr.
    env = {**os.environ, "CONNECTION_URL": seeded_db, "NO_COLOR": "1"}
    for verb in ("status", "sessions"):
        reader, writer = os.pipe()
        os.close(reader)  # gone before the first line is written
        try:
            done = subprocess.run(
                [str(ROOT / ".venv" / "bin" / "cruddur"), "db", verb],
                env=env, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
                check=False,
            )  # fmt: skip
        finally:
            os.close(writer)
        assert done.returncode == 141, done.stderr
        assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
        assert "error" not in done.stderr


def test_output_that_cannot_be_written_is_one_line_saying_so(seeded_db) -> None:
    # stdout on a full disk (/dev/full): "unexpected OSError: [Errno 28] …, run again with
    # CRUDDUR_DEBUG=1", as if it were a bug.
    env = {**os.environ, "CONNECTION_URL": seeded_db, "NO_COLOR": "1"}
    for verb in ("status", "sessions"):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [str(ROOT / ".venv" / "bin" / "cruddur"), "db", verb],
                env=env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60,
                check=False,
            )  # fmt: skip
        assert done.returncode == 1, done.stderr
        said = "error: cannot write the output: No space left on device"
        assert done.stderr.splitlines()[-1] == said, done.stderr
        assert "unexpected" not in done.stderr and "CRUDDUR_DEBUG" not in done.stderr
    # A verb's --help too (click prints it within the group's invoke).
    for args in (["db", "--help"], ["db", "status", "--help"], ["web", "build", "--help"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [str(ROOT / ".venv" / "bin" / "cruddur"), *args],
                env=env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60,
                check=False,
            )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert done.stderr == "error: cannot write the output: No space left on device\n", args


def _on_a_terminal(command: list[str], columns: int, env: dict[str, str]) -> str:
    """What `command` prints on a pseudo-terminal `columns` wide (a table, not lines)."""
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        command, stdout=follower, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env={**os.environ, **env, "NO_COLOR": "1", "COLUMNS": str(columns)},
    )  # fmt: skip
    os.close(follower)
    shown = b""
    try:
        while chunk := os.read(leader, 65536):
            shown += chunk
    except OSError:  # EIO: the command ended, and the terminal with it
        pass
    finally:
        os.close(leader)
    assert process.wait(timeout=60) == 0, shown
    # NO_COLOR keeps bold headings: their escapes are no part of what the width holds.
    return re.sub(r"\x1b\[[0-9;]*m", "", shown.decode().replace("\r\n", "\n"))


_TABLE_OF_VERSIONS = """
from cruddur.cli.output import table
table(("version", "name", "status", "applied at (UTC)"), [
    ("20261202093000", "add_bio_to_users", "applied", "2026-12-02 09:30:00"),
    ("20261206113000", "users_handle_any_case", "pending", ""),
])
"""


@pytest.mark.parametrize("columns", [30, 40, 50, 60, 80])
def test_numbers_in_a_table_on_a_narrow_terminal_stay_whole(empty_db, columns: int) -> None:
    # A narrow terminal folded versions and pids mid-number (`2026120` over `2093000`),
    # and a version could not be copied for --accept-edited.
    with psycopg.connect(empty_db, application_name="narrow-probe") as conn:
        pid = conn.info.backend_pid
        shown = _on_a_terminal(
            [str(ROOT / ".venv/bin/cruddur"), "db", "sessions"], columns, local(empty_db)
        )
    assert re.search(rf"(?<!\d){pid}(?!\d)", shown), shown
    versions = _on_a_terminal([sys.executable, "-c", _TABLE_OF_VERSIONS], columns, {})
    for version in ("20261202093000", "20261206113000"):
        assert version in versions, versions
    assert max(map(len, versions.splitlines())) <= columns or "\t" in versions
