"""What a new user meets after `bin/run` and `bin/test`: seeding again, setting up again
while the API serves, production still asking first."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from api_support import snapshot
from helpers import ROOT, cli, run, tables
from served import serve

import cruddur
from cruddur.cli.output import cruddur_command

SEED_CRUD = "5eed0000-0000-4000-8000-000000000001"  # seed.sql's crud with replies


def test_seeding_twice_is_harmless(seeded_db: str) -> None:
    before = snapshot(seeded_db)
    again = run("db-seed", env={"CONNECTION_URL": seeded_db})
    assert again.returncode == 0, again.stderr
    assert snapshot(seeded_db) == before


def test_seeding_after_the_seed_crud_was_deleted_puts_back_only_what_is_missing(
    seeded_db: str,
) -> None:
    with psycopg.connect(seeded_db) as conn:
        conn.execute("DELETE FROM activities WHERE message = 'Welcome to the feed.'")
    result = cli("db-seed", env={"CONNECTION_URL": seeded_db})
    assert result.returncode == 0, result.stderr
    with psycopg.connect(seeded_db) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM activities),"
            " (SELECT replies_count FROM activities"
            "  WHERE message = 'This was imported as seed data!')"
        ).fetchone()
    assert counts == (3, 5, 2)


def test_the_seed_replies_never_go_to_a_crud_that_only_shares_the_seed_cruds_text(
    seeded_db: str,
) -> None:
    # andrewbrown posts the seed crud's very text while the seed's own crud is gone (it
    # expired and was purged): seeding again must not hang the seed's replies on his.
    seed_text = "This was imported as seed data!"
    with psycopg.connect(seeded_db) as conn:
        conn.execute("DELETE FROM activities WHERE message = %s", [seed_text])  # and replies
        his = conn.execute(
            "INSERT INTO activities (user_uuid, message)"
            " SELECT uuid, %s FROM users WHERE handle = 'andrewbrown' RETURNING uuid",
            [seed_text],
        ).fetchone()[0]
    result = cli("db-seed", env={"CONNECTION_URL": seeded_db})
    assert result.returncode == 0, result.stderr
    with psycopg.connect(seeded_db) as conn:
        replies = conn.execute(
            "SELECT replies_count, (SELECT count(*) FROM activities WHERE"
            " reply_to_activity_uuid = %s) FROM activities WHERE uuid = %s",
            [his, his],
        ).fetchone()
    assert replies == (0, 0)


def test_seeding_a_database_seeded_before_the_fixed_uuid_adds_nothing(seeded_db: str) -> None:
    # An earlier seed.sql gave the seed crud a random uuid: seeding again must not add a
    # second seed crud (with the fixed uuid) and two more replies beside it.
    with psycopg.connect(seeded_db) as conn:
        old = conn.execute(
            "INSERT INTO activities (user_uuid, message, replies_count, created_at, expires_at)"
            " SELECT user_uuid, message, replies_count, created_at, expires_at FROM activities"
            " WHERE uuid = %s RETURNING uuid",
            [SEED_CRUD],
        ).fetchone()[0]
        conn.execute(
            "UPDATE activities SET reply_to_activity_uuid = %s WHERE reply_to_activity_uuid = %s",
            [old, SEED_CRUD],
        )
        conn.execute("DELETE FROM activities WHERE uuid = %s", [SEED_CRUD])
    before = snapshot(seeded_db)
    again = cli("db-seed", env={"CONNECTION_URL": seeded_db})
    assert again.returncode == 0, again.stderr
    assert snapshot(seeded_db) == before


def _feed(base: str) -> int:
    try:
        with urllib.request.urlopen(f"{base}/api/activities/home", timeout=10) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_setup_while_the_api_serves_rebuilds_the_local_database(seeded_db: str, tmp_path) -> None:
    with psycopg.connect(seeded_db) as conn:
        conn.execute("DELETE FROM activities")
    with serve(seeded_db, tmp_path / "home") as served:
        assert _feed(served.base) == 200  # the API holds a connection now
        result = run("db-setup", env={"CONNECTION_URL": seeded_db})
        assert result.returncode == 0, result.stderr
        assert re.search(r"disconnecting [1-9]\d* sessions?", result.stderr), result.stderr
        assert "is ready" in result.stderr
        # The API reconnects by itself: served from the new database within a second (the
        # bound the API keeps after any outage), in practice on the next request.
        deadline = time.monotonic() + 1
        while (status := _feed(served.base)) != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200
    with psycopg.connect(seeded_db) as conn:
        assert conn.execute("SELECT count(*) FROM activities").fetchone()[0] == 5


def test_setup_on_production_still_refuses_while_others_are_connected(
    seeded_db: str, empty_db: str
) -> None:
    env = {"CONNECTION_URL": empty_db, "PROD_CONNECTION_URL": seeded_db}
    before = snapshot(seeded_db)
    with psycopg.connect(seeded_db):
        unconfirmed = run("db-setup", "prod", env=env)
        assert unconfirmed.returncode == 1
        busy = run("db-setup", "prod", "--yes", env=env)
        assert busy.returncode == 1
        assert "1 other session" in busy.stderr and "--force" in busy.stderr
    assert snapshot(seeded_db) == before
    assert tables(empty_db) == set()


def _help(*args: str) -> str:
    from click.testing import CliRunner

    from cruddur.cli import main

    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("group", [[], ["db"], ["dev"], ["lambda"], ["rds"], ["users"], ["web"]])
def test_help_lists_every_command_without_cutting_it_short(group: list[str]) -> None:
    commands = _help(*group).split("Commands:\n", 1)[1]
    assert "..." not in commands, commands


def test_dev_token_help_shows_an_example_that_pastes_as_is() -> None:
    lines = _help("dev", "token").splitlines()
    start = next(i for i, line in enumerate(lines) if "TOKEN=$(" in line)
    example = [line.strip() for line in lines[start : start + 3]]
    assert example == [
        "TOKEN=$(.venv/bin/cruddur dev token --handle andrewbrown)",
        """curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\""",
        """-d '{"message": "hello", "ttl": "1-day"}' localhost:4567/api/activities""",
    ]


def test_the_hints_name_the_cruddur_command_as_it_was_typed(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    # A hint to paste (`… dev token --handle …`) must run as it is printed, however
    # cruddur was started: through `python -m cruddur` it is not the module's file.
    monkeypatch.chdir(tmp_path)
    main_module = Path(cruddur.__file__).parent / "__main__.py"
    monkeypatch.setattr(sys, "argv", [str(main_module), "serve"])
    typed = cruddur_command()
    assert typed == f"{Path(sys.executable).absolute()} -m cruddur"
    pasted = subprocess.run(
        [*typed.split(" "), "--help"], capture_output=True, text=True, check=False
    )
    assert pasted.returncode == 0 and "Usage:" in pasted.stdout, pasted.stderr


def test_hints_name_a_checkout_under_a_folder_with_a_space_so_they_paste(tmp_path) -> None:
    # A review: under `my proj/`, the usage line and hints said my proj/.venv/bin/cruddur
    # and `my proj/bin/db-seed`, unquoted: pasted, the shell ran `my`.
    (tmp_path / "my proj").symlink_to(ROOT)
    cruddur = tmp_path / "my proj" / ".venv" / "bin" / "cruddur"
    env = {**os.environ, "CONNECTION_URL": "postgresql://nobody@127.0.0.1:1/nowhere"}
    env.pop("PROD_CONNECTION_URL", None)
    usage = subprocess.run([cruddur, "db", "--help"], cwd=tmp_path, capture_output=True,
                           text=True, env=env, check=False)  # fmt: skip
    assert "Usage: 'my proj/.venv/bin/cruddur' db" in usage.stdout, usage.stdout
    failed = subprocess.run([cruddur, "db", "create"], cwd=tmp_path, capture_output=True,
                            text=True, env=env, check=False)  # fmt: skip
    said = " ".join(failed.stderr.split())
    assert "`'my proj/bin'/rds-update-sg-rule`" in said, said
    for pasted in ("'my proj/.venv/bin/cruddur' --help", "'my proj/bin'/rds-update-sg-rule --help"):
        ran = subprocess.run(["bash", "-c", pasted], cwd=tmp_path, capture_output=True,
                             text=True, env=env, check=False)  # fmt: skip
        assert ran.returncode == 0, (pasted, ran.stderr)


def test_seeding_again_replies_only_to_the_seeds_own_crud_and_writes_no_other_row(
    seeded_db: str,
) -> None:
    seed_text = "This was imported as seed data!"
    with psycopg.connect(seeded_db) as conn:
        # A user posts the seed crud's text; another crud's count is someone else's business.
        mine = conn.execute(
            "INSERT INTO activities (user_uuid, message)"
            " SELECT uuid, %s FROM users WHERE handle = 'londo' RETURNING uuid",
            [seed_text],
        ).fetchone()[0]
        conn.execute("UPDATE activities SET replies_count = 7 WHERE message LIKE 'Ah, arrogance%'")
        conn.commit()
        written = dict(conn.execute("SELECT uuid, xmin::text FROM activities").fetchall())
    result = cli("db-seed", env={"CONNECTION_URL": seeded_db})
    assert result.returncode == 0, result.stderr
    with psycopg.connect(seeded_db) as conn:
        replies_to_mine = conn.execute(
            "SELECT count(*) FROM activities WHERE reply_to_activity_uuid = %s", [mine]
        ).fetchone()[0]
        after = dict(conn.execute("SELECT uuid, xmin::text FROM activities").fetchall())
    assert replies_to_mine == 0
    assert after == written  # no row inserted, none rewritten (xmin moves on any UPDATE)


def test_no_help_breaks_a_word_across_lines() -> None:
    # Wrapped at hyphens and inside long words: `--if-` / `missing`, `[default: cruddur-`
    # / `db-instance]`, `dist/post-` / `confirmation.zip`, none of which could be copied.
    import click

    from cruddur.cli import VERBS, main

    ctx = click.Context(main, info_name="cruddur")
    commands: list[list[str]] = [[]]
    for name in sorted(VERBS):
        commands.append([name])
        group = main.get_command(ctx, name)
        if isinstance(group, click.Group):
            commands += [[name, verb] for verb in group.list_commands(ctx)]
    broken = {
        " ".join(words): line
        for words in commands
        for line in _help(*words).splitlines()
        if re.search(r"[A-Za-z0-9/]-$", line)
    }
    assert broken == {}
    assert "[default: cruddur-db-instance]" in " ".join(_help("rds", "stop").split())


def test_output_that_cannot_be_written_ends_in_one_line_or_quietly() -> None:
    # `--help >/dev/full` printed a traceback; `db --help` into a closed pipe, "error:
    # unexpected BrokenPipeError … CRUDDUR_DEBUG=1".
    cruddur = str(ROOT / ".venv/bin/cruddur")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [cruddur, "--help"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=30
        )
    assert done.returncode == 1
    assert done.stderr.strip() == "error: cannot write the output: No space left on device"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away, as `| head` does
    try:
        closed = subprocess.run(
            [cruddur, "db", "--help"], stdout=write_end, stderr=subprocess.PIPE, text=True,
            timeout=30,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert closed.stderr == "", closed.stderr
    assert closed.returncode == 141  # as SIGPIPE ends a shell tool, not 1: a failure


def test_shell_completion_answers_when_cruddur_is_not_on_path() -> None:
    # Run as .venv/bin/cruddur, click named the completion variable after that path:
    # _CRUDDUR_COMPLETE printed the help (exit 2) instead of the verbs.
    done = subprocess.run(
        [str(ROOT / ".venv/bin/cruddur")],
        env={**os.environ, "_CRUDDUR_COMPLETE": "bash_complete", "COMP_WORDS": "cruddur d",
             "COMP_CWORD": "1"},
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["plain,db", "plain,dev"]
