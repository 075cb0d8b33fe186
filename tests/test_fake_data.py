"""`cruddur db seed --fake`: bulk fake users and cruds that hold together."""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
from uuid import UUID

import psycopg
import pytest
from helpers import ROOT, cli, ctrl_c_once, run
from psycopg import sql

from cruddur.db import Db
from cruddur.ops import fake, fake_rows, loading
from cruddur.services import activities
from cruddur.services.users import Author
from cruddur.urls import with_database

CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"


def fake_seed(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(CRUDDUR, "db", "seed", "--fake", *args, env={"CONNECTION_URL": url})


def one(url: str, query: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def another_seeded_db(admin, server_url, new_db_name) -> str:
    name = new_db_name()
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    with Db(url) as db:
        loading.load(db, loading.SCHEMA)
        loading.load(db, loading.SEED)
    return url


def test_fake_rows_hold_together(seeded_db: str) -> None:
    result = fake_seed(seeded_db, "--users", "40", "--activities", "3000", "--seed", "7")
    assert result.returncode == 0, result.stderr
    assert "3,000 activities and 40 users in" in result.stderr
    assert "--seed 7" in result.stderr
    assert "\r" not in result.stderr  # no progress bar drawn without a terminal

    # the seed's 3 users and 5 cruds are still there, beside the fake ones
    assert one(seeded_db, "SELECT count(*) FROM users") == 43
    assert one(seeded_db, "SELECT count(*) FROM activities") == 3005
    assert one(seeded_db, "SELECT count(*) FROM users WHERE cognito_user_id LIKE 'MOCK-%'") == 3
    fake_users = "SELECT * FROM users WHERE cognito_user_id LIKE 'FAKE-%'"
    assert one(seeded_db, f"SELECT count(DISTINCT handle) FROM ({fake_users}) u") == 40  # noqa: S608
    assert (
        one(
            seeded_db,
            f"SELECT count(*) FROM ({fake_users}) u "  # noqa: S608
            "WHERE handle !~ '^[a-z0-9_.]{1,64}$' OR email !~ '^[^@]+@example\\.(com|org|net)$'"
            " OR cognito_user_id !~ '^FAKE-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-'",
        )
        == 0
    )

    # every parent's replies_count is its number of replies; parents are older
    assert (
        one(
            seeded_db,
            "SELECT count(*) FROM activities p WHERE replies_count <> "
            "(SELECT count(*) FROM activities r WHERE r.reply_to_activity_uuid = p.uuid)",
        )
        == 0
    )
    replies = one(
        seeded_db, "SELECT count(*) FROM activities WHERE reply_to_activity_uuid IS NOT NULL"
    )
    assert 300 < replies < 900  # about a fifth of 3,000, plus the seed's two
    assert (
        one(
            seeded_db,
            "SELECT count(*) FROM activities r LEFT JOIN activities p"
            " ON p.uuid = r.reply_to_activity_uuid"
            " WHERE r.reply_to_activity_uuid IS NOT NULL"
            " AND (p.uuid IS NULL OR p.created_at >= r.created_at)",
        )
        == 0
    )

    # every reply is one the API could have taken: made while its parent was live, and
    # expiring with it (none outlives its parent, none was made to an expired one)
    assert (
        one(
            seeded_db,
            "SELECT count(*) FROM activities r JOIN activities p"
            " ON p.uuid = r.reply_to_activity_uuid"
            " WHERE r.expires_at <> p.expires_at OR r.created_at >= p.expires_at",
        )
        == 0
    )

    # times, lengths, a mix of live and expired, some text beyond ASCII
    assert (
        one(
            seeded_db,
            "SELECT count(*) FROM activities WHERE expires_at <= created_at"
            " OR char_length(message) NOT BETWEEN 1 AND 280"
            " OR created_at > now() OR created_at < now() - interval '31 days'",
        )
        == 0
    )
    live = one(seeded_db, "SELECT count(*) FROM activities WHERE expires_at > now()")
    assert 1500 < live < 2900
    assert one(seeded_db, "SELECT count(*) FROM activities WHERE message ~ '[^\\x01-\\x7f]'") > 100
    assert one(seeded_db, "SELECT max(char_length(message)) FROM activities") > 200
    assert one(seeded_db, "SELECT count(*) FROM activities WHERE message LIKE '%\\\\%'") > 0
    assert one(seeded_db, "SELECT count(*) FROM activities WHERE likes_count > 0") > 300


def _fingerprint(url: str) -> tuple[str, str]:
    users = one(
        url,
        "SELECT md5(string_agg(concat_ws('|', uuid, handle, display_name, email,"
        " cognito_user_id), ',' ORDER BY uuid)) FROM users WHERE cognito_user_id LIKE 'FAKE-%'",
    )
    activities = one(
        url,
        "SELECT md5(string_agg(concat_ws('|', uuid, user_uuid, message, replies_count,"
        " reposts_count, likes_count, reply_to_activity_uuid, expires_at - created_at),"
        " ',' ORDER BY uuid)) FROM activities WHERE user_uuid IN"
        " (SELECT uuid FROM users WHERE cognito_user_id LIKE 'FAKE-%')",
    )
    return str(users), str(activities)


def test_one_of_each_is_said_in_the_singular(seeded_db: str) -> None:
    # A review: "1 activities and 1 users".
    result = fake_seed(seeded_db, "--users", "1", "--activities", "1")
    assert result.returncode == 0, result.stderr
    assert "1 activity and 1 user in" in result.stderr


def test_the_same_seed_gives_the_same_rows(seeded_db: str, another_seeded_db: str) -> None:
    for url in (seeded_db, another_seeded_db):
        with Db(url) as db:
            fake.load(db, fake.FakeData(30, 2000, seed=42))
    first = _fingerprint(seeded_db)
    assert first == _fingerprint(another_seeded_db)

    with Db(another_seeded_db) as db:
        fake.load(db, fake.FakeData(30, 2000, seed=43), replace=True)
    other = _fingerprint(another_seeded_db)
    assert other[0] != first[0] and other[1] != first[1]


def test_replace_removes_only_earlier_fake_rows(seeded_db: str) -> None:
    assert (
        fake_seed(seeded_db, "--users", "20", "--activities", "500", "--seed", "1").returncode == 0
    )

    again = fake_seed(seeded_db, "--users", "20", "--activities", "500", "--seed", "1")
    assert again.returncode == 1
    assert "--replace" in again.stderr and "Traceback" not in again.stderr
    assert one(seeded_db, "SELECT count(*) FROM activities") == 505  # nothing half-added

    replaced = fake_seed(seeded_db, "--users", "10", "--activities", "100", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert "deleted 20 earlier fake users" in replaced.stderr
    assert one(seeded_db, "SELECT count(*) FROM users") == 13
    assert one(seeded_db, "SELECT count(*) FROM activities") == 105
    assert (
        one(seeded_db, "SELECT replies_count FROM activities WHERE message LIKE 'This was%'") == 2
    )


def test_two_fake_loads_at_once_both_land(seeded_db: str) -> None:
    # A review: two loads at once picked the same free handles (each checked before the
    # other wrote), and one ended in a bare "deadlock detected". They go one at a time:
    # while another holds the load's lock, a load waits, then lands.
    with psycopg.connect(seeded_db, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('cruddur db seed --fake'))")
        waiting = subprocess.Popen(
            [CRUDDUR, "db", "seed", "--fake", "--users", "300", "--activities", "0", "--seed", "1"],
            env={**os.environ, "CONNECTION_URL": seeded_db}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=3)  # held by "another load"
    _, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, stderr
    again = fake_seed(seeded_db, "--users", "300", "--activities", "0", "--seed", "2")
    assert again.returncode == 0, again.stderr
    assert one(seeded_db, "SELECT count(*) FROM users WHERE cognito_user_id LIKE 'FAKE-%'") == 600


SEED_CRUD = UUID("5eed0000-0000-4000-8000-000000000001")
WRONG_COUNTS = (
    "SELECT count(*) FROM activities AS parent WHERE replies_count <>"
    " (SELECT count(*) FROM activities AS reply WHERE reply.reply_to_activity_uuid = parent.uuid)"
)
FAKE_USERS = (
    "SELECT uuid, cognito_user_id FROM users WHERE cognito_user_id LIKE 'FAKE-%' ORDER BY uuid"
)
BAYKO = "SELECT uuid, cognito_user_id FROM users WHERE handle = 'bayko'"
SEED_REPLY = "SELECT uuid FROM activities WHERE reply_to_activity_uuid = %s LIMIT 1"
LIVE_FAKE_CRUD = (
    "SELECT a.uuid FROM activities AS a JOIN users AS u ON u.uuid = a.user_uuid"
    " WHERE u.cognito_user_id LIKE 'FAKE-%' AND a.reply_to_activity_uuid IS NULL"
    " AND a.expires_at > now() + interval '1 hour' LIMIT 1"
)


def test_replace_lowers_the_reply_counts_of_real_rows_fake_users_answered(seeded_db: str) -> None:
    # The cascade from the users row took a fake user's reply to a seed crud, and nothing
    # lowered the crud's replies_count: 3 for 2 replies, for good.
    assert fake_seed(seeded_db, "--users", "10", "--activities", "300").returncode == 0
    with psycopg.connect(seeded_db) as conn:
        fakes = [Author(*row) for row in conn.execute(FAKE_USERS).fetchall()]
        (seed_reply,) = conn.execute(SEED_REPLY, [SEED_CRUD]).fetchone()
        bayko = Author(*conn.execute(BAYKO).fetchone())
        (fake_crud,) = conn.execute(LIVE_FAKE_CRUD).fetchone()
    with Db(seeded_db) as db:  # as the API writes replies
        assert activities.create_reply(db, fakes[0], SEED_CRUD, "a fake reply")
        assert activities.create_reply(db, fakes[1], SEED_CRUD, "another")
        assert activities.create_reply(db, fakes[0], seed_reply, "a reply to a reply")
        # A real reply to a fake crud goes with it, and so does a fake reply to that.
        real = json.loads(activities.create_reply(db, bayko, fake_crud, "real") or "{}")
        assert activities.create_reply(db, fakes[2], UUID(real["uuid"]), "fake again")
    assert one(seeded_db, WRONG_COUNTS) == 0

    replaced = fake_seed(seeded_db, "--users", "5", "--activities", "10", "--replace", "--yes")
    assert replaced.returncode == 0, replaced.stderr
    assert (
        one(seeded_db, "SELECT replies_count FROM activities WHERE message LIKE 'This was%'") == 2
    )
    assert one(seeded_db, WRONG_COUNTS) == 0


def test_uuids_for_over_16_million_rows_are_drawn_in_pieces_with_the_same_bytes() -> None:
    # One randbytes(16 * n) draw is at most 2**31 - 1 bits: `db seed --fake --activities
    # 17000000` ended in "unexpected OverflowError: Python int too large to convert to C int".
    asked: list[int] = []

    class Counting(random.Random):
        def randbytes(self, n: int) -> bytes:
            asked.append(n)
            return b""  # the sizes are what is checked here, not 272 MB of bytes

    fake_rows.random_bytes(Counting(1), 16 * 17_000_000)
    assert sum(asked) == 16 * 17_000_000
    assert max(asked) * 8 <= 2**31 - 1
    size = 3 * fake_rows.RANDOM_CHUNK + 16  # pieces, then a short one: the same stream
    assert fake_rows.random_bytes(random.Random(7), size) == random.Random(7).randbytes(size)


def _at_most_2_gb() -> None:
    # Address space, not RSS: a runaway fails with MemoryError here instead of taking
    # the machine's memory; the command itself needs a fraction of it.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_a_load_too_large_for_memory_is_a_usage_error_not_a_runaway(seeded_db: str) -> None:
    # Every row is planned in memory before the first is written: `--activities
    # 2147483647` (the old limit) grew past 3.4 GB of memory in 12 s and went on.
    env = {**os.environ, "CONNECTION_URL": seeded_db, "NO_COLOR": "1"}
    for flag, most in (("--activities", "10000000"), ("--users", "1000000")):
        refused = subprocess.run(
            [CRUDDUR, "db", "seed", "--fake", flag, "2147483647"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
            preexec_fn=_at_most_2_gb,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert f"2147483647 is not in the range 0<=x<={most}" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert one(seeded_db, "SELECT count(*) FROM users") == 3
    # FakeData refuses too (for a caller other than the CLI), before its arrays.
    with pytest.raises(ValueError, match="at most 1,000,000 users and 10,000,000 activities"):
        fake_rows.check_sizes(1, fake_rows.MAX_ACTIVITIES + 1)


def _someone_else_has(db: Db, handle: str, sub: str = "sub-1") -> None:
    db.query_commit(
        "INSERT INTO users (display_name, handle, email, cognito_user_id)"
        " VALUES ('Someone Else', %s, 'x@example.com', %s)",
        [handle, sub],
    )


def test_a_taken_handle_gets_a_number(db: Db) -> None:
    data = fake.FakeData(50, 10, seed=5)
    wanted = data.handles[7]
    _someone_else_has(db, wanted)
    fake.load(db, data)
    assert db.query_value("SELECT count(*) FROM users WHERE handle = %s", [wanted]) == 1
    assert data.handles[7].startswith(wanted) and data.handles[7] != wanted
    assert db.query_value("SELECT count(*) FROM users WHERE handle = %s", [data.handles[7]]) == 1


def test_a_handle_taken_in_another_case_gets_a_number(db: Db) -> None:
    # Two handles that differ only in case cannot both exist: the load failed on the
    # database's unique index, nothing written.
    data = fake.FakeData(50, 10, seed=5)
    wanted = data.handles[7]
    _someone_else_has(db, wanted.upper())
    assert fake.load(db, data).users == 50
    assert data.handles[7].startswith(wanted) and data.handles[7] != wanted


def test_a_renamed_handle_is_checked_against_the_database_too(db: Db) -> None:
    # The handle and every one-digit rename of it are taken: the first number added
    # must be checked again, not assumed free (a duplicate key failed the whole load).
    data = fake.FakeData(50, 10, seed=5)
    wanted = data.handles[7]
    for n, handle in enumerate([wanted] + [f"{wanted}{d}" for d in range(10)]):
        _someone_else_has(db, handle, f"sub-{n}")
    loaded = fake.load(db, data)
    assert loaded.users == 50
    assert len(data.handles[7]) == len(wanted) + 2
    assert db.query_value("SELECT count(*) FROM users WHERE handle = %s", [data.handles[7]]) == 1


def test_a_failed_fake_load_names_its_seed(seeded_db: str) -> None:
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'no more users'; END$$"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON users EXECUTE FUNCTION refuse()")
    result = fake_seed(seeded_db, "--users", "5", "--activities", "5", "--seed", "31")
    assert result.returncode == 1
    assert "error: no more users" in result.stderr
    assert "seed 31: `--seed 31` makes the same rows" in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--fake", "--activities", "-1"], "-1 is not in the range"),
        (["--fake", "--users", "1" + "0" * 20], "is not in the range 0<=x<=1000000"),
        (["--fake", "--activities", "10000001"], "is not in the range 0<=x<=10000000"),
        (["--fake", "--users", "1000001"], "is not in the range 0<=x<=1000000"),
        (["--fake", "--users", "0", "--activities", "5"], "--users must be at least 1"),
        (["--users", "5"], "--users goes only with --fake"),
        (["--seed", "5", "--replace"], "--seed, --replace go only with --fake"),
        # A review: random took -5 as 5, and the run after said "the same seed".
        (["--fake", "--users", "5", "--seed", "-5"], "-5 is not in the range x>=0"),
    ],
)
def test_bad_arguments_are_refused_before_anything_changes(
    seeded_db: str, args: list[str], says: str
) -> None:
    result = cli(CRUDDUR, "db", "seed", *args, env={"CONNECTION_URL": seeded_db})
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert one(seeded_db, "SELECT count(*) FROM users") == 3


def test_fake_on_production_asks_first(seeded_db: str, another_seeded_db: str) -> None:
    env = {"CONNECTION_URL": seeded_db, "PROD_CONNECTION_URL": another_seeded_db}
    args = ("db-seed", "prod", "--fake", "--users", "5", "--activities", "50")
    refused = run(*args, env=env)
    assert refused.returncode == 1
    assert "fake cruds" in refused.stderr and "not confirmed" in refused.stderr
    assert one(another_seeded_db, "SELECT count(*) FROM users") == 3
    # One of each is said so ("1 fake users and 1 fake cruds", a review).
    single = run("db-seed", "prod", "--fake", "--users", "1", "--activities", "1", env=env)
    assert "add 1 fake user and 1 fake crud (" in single.stderr, single.stderr

    confirmed = run(
        *args, env=env, stdin=f"{one(another_seeded_db, 'SELECT current_database()')}\n"
    )
    assert confirmed.returncode == 0, confirmed.stderr
    assert one(another_seeded_db, "SELECT count(*) FROM users") == 8
    assert one(seeded_db, "SELECT count(*) FROM users") == 3  # the local one untouched


def test_ctrl_c_while_writing_says_nothing_was_written_and_exits_130(seeded_db: str) -> None:
    # It said only "Aborted!", exit status 1, leaving the user to guess what stayed.
    command = [CRUDDUR, "db", "seed", "--fake", "--users", "100", "--activities", "3000000"]
    status, err = ctrl_c_once(command, seeded_db, {}, "query LIKE 'COPY activities%'")
    assert status == 130, err
    assert "interrupted: nothing was written" in err, err
    assert "Aborted!" not in err and "Traceback" not in err
    assert one(seeded_db, "SELECT count(*) FROM users WHERE cognito_user_id LIKE 'FAKE-%'") == 0


@pytest.mark.parametrize("width", [80, 100, 160])
def test_the_progress_bar_fits_its_terminal_on_one_line_with_7_digit_counts(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At 80 columns, six-digit counts pushed "rows/s" onto a second line.
    from rich.console import Console

    from cruddur.cli import progress

    clock = [0.0]
    console = Console(
        width=width, record=True, force_terminal=True, color_system=None, get_time=lambda: clock[0]
    )
    monkeypatch.setattr(progress, "err", lambda: console)  # a terminal this wide
    bar = progress.RowsProgress(9_999_999)
    shown = []
    for stage in ("deleting", "writing", "committing", "purging"):  # every stage's name
        bar.stage(stage)
        for _ in range(3):
            clock[0] += 0.5
            bar.advance(617_283)  # 1,234,566 rows/s
        console.print(bar._bar.get_renderable())
        shown.append(f"{bar._bar.tasks[0].completed:,.0f} / 9,999,999 rows")
    lines = console.export_text().splitlines()
    assert len(lines) == 4, lines  # one line each, nothing wrapped
    assert all(len(line) <= width for line in lines), lines
    for line, counts in zip(lines, shown, strict=True):
        assert counts in line and "rows/s" in line, line
    assert "1,234,566 rows/s" in lines[-1]
    assert ("0:00:" in lines[-1].split("rows/s")[1].split("eta")[0]) == (width >= 100)
