"""`cruddur users sync-cognito` against Cognito in moto's server mode (real HTTP calls)."""

from __future__ import annotations

import psycopg
import pytest
from helpers import ROOT, cli, ctrl_c_once, run

from cruddur.aws import client

CRUDDUR = ROOT / ".venv/bin/cruddur"


def attributes(**values: str) -> list[dict[str, str]]:
    return [{"Name": name, "Value": value} for name, value in values.items()]


@pytest.fixture
def pool(aws: dict[str, str]) -> str:
    """A user pool with 70 confirmed users (more than ListUsers' page of 60), the seed's
    andrewbrown, one handle held by someone else, one unconfirmed sign-up."""
    cognito = client("cognito-idp")
    pool_id = cognito.create_user_pool(PoolName="cruddur")["UserPool"]["Id"]
    for n in range(70):
        cognito.admin_create_user(
            UserPoolId=pool_id,
            Username=f"user{n:02d}",
            UserAttributes=attributes(
                email=f"user{n:02d}@example.com", preferred_username=f"user{n:02d}", name=f"U {n}"
            ),
        )
    cognito.admin_create_user(
        UserPoolId=pool_id,
        Username="andrew",
        UserAttributes=attributes(
            email="andrew@exampro.co",
            email_verified="true",
            preferred_username="andrewbrown",
            name="Andrew Brown",
        ),
    )
    cognito.admin_create_user(
        UserPoolId=pool_id,
        Username="impostor",
        UserAttributes=attributes(email="i@example.com", preferred_username="taken"),
    )
    app = cognito.create_user_pool_client(UserPoolId=pool_id, ClientName="web")
    cognito.sign_up(
        ClientId=app["UserPoolClient"]["ClientId"],
        Username="pending",
        Password="Pa55word!Pa55word!",
        UserAttributes=attributes(email="p@example.com", preferred_username="pending"),
    )
    return pool_id


def subs(pool_id: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for page in client("cognito-idp").get_paginator("list_users").paginate(UserPoolId=pool_id):
        for user in page["Users"]:
            values = {a["Name"]: a["Value"] for a in user["Attributes"]}
            found[values["preferred_username"]] = values["sub"]
    return found


def test_sync_inserts_missing_users_and_replaces_placeholders(
    pool: str, aws: dict[str, str], seeded_db: str
) -> None:
    with psycopg.connect(seeded_db) as conn:
        conn.execute(
            "INSERT INTO users (display_name, handle, email, cognito_user_id)"
            " VALUES ('Taken', 'taken', 't@example.com', 'real-sub-of-someone-else')"
        )
    env = {**aws, "CONNECTION_URL": seeded_db, "AWS_COGNITO_USER_POOL_ID": pool}

    dry = run(CRUDDUR, "users", "sync-cognito", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would insert  user69" in dry.stdout
    with psycopg.connect(seeded_db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 4

    synced = cli(CRUDDUR, "users", "sync-cognito", env=env)
    assert synced.returncode == 0, synced.stderr
    assert "73 users" in synced.stderr and "(2 pages)" in synced.stderr
    assert "70 inserted, 1 updated, 0 unchanged, 2 skipped" in synced.stderr
    assert "updated  andrewbrown  (placeholder id replaced)" in synced.stdout
    assert "refused from now on: tokens signed for the placeholder ids" in synced.stderr
    assert "would refuse: tokens signed for the placeholder ids" in dry.stderr
    assert "skipped  taken: the username 'taken' is already taken" in synced.stdout
    assert "skipped  pending: not confirmed yet" in synced.stdout

    ids = subs(pool)
    with psycopg.connect(seeded_db) as conn:
        rows = dict(conn.execute("SELECT handle, cognito_user_id FROM users").fetchall())
    assert all(rows[f"user{n:02d}"] == ids[f"user{n:02d}"] for n in range(70))
    assert rows["andrewbrown"] == ids["andrewbrown"]
    assert rows["bayko"] == "MOCK-bayko"  # no Cognito user: left alone
    assert rows["taken"] == "real-sub-of-someone-else"
    assert "pending" not in rows

    again = cli(CRUDDUR, "users", "sync-cognito", "--user-pool-id", pool, env=env)
    assert again.returncode == 0, again.stderr
    assert "0 inserted, 0 updated, 71 unchanged, 2 skipped" in again.stderr


def test_sync_needs_a_pool_and_explains_a_wrong_one(aws: dict[str, str], seeded_db: str) -> None:
    env = {**aws, "CONNECTION_URL": seeded_db}
    missing = cli(CRUDDUR, "users", "sync-cognito", env=env)
    assert missing.returncode == 2
    assert "--user-pool-id" in missing.stderr and "AWS_COGNITO_USER_POOL_ID" in missing.stderr
    wrong = cli(CRUDDUR, "users", "sync-cognito", "--user-pool-id", "us-east-1_nope", env=env)
    assert wrong.returncode == 1
    assert "error: ResourceNotFoundException" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    # Not a pool id at all: a usage error before the database or Cognito is asked.
    for given in ("", " ", "é_x", "us-east-1", "pool"):
        refused = cli(CRUDDUR, "users", "sync-cognito", "--user-pool-id", given, env=env)
        assert refused.returncode == 2, refused.stderr
        assert f"{given!r} is not a user pool id: <region>_<id>" in refused.stderr
        assert "database:" not in refused.stderr


def test_sync_on_production_asks_first(aws: dict[str, str], seeded_db: str, pool: str) -> None:
    env = {**aws, "PROD_CONNECTION_URL": seeded_db, "AWS_COGNITO_USER_POOL_ID": pool}
    refused = run(CRUDDUR, "users", "sync-cognito", "--prod", env=env)
    assert refused.returncode == 1
    assert "not confirmed, nothing done" in refused.stderr
    with psycopg.connect(seeded_db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 3


def test_sync_skips_accounts_that_are_not_for_good(seeded_db: str) -> None:
    from cruddur.db import Db
    from cruddur.ops.cognito_sync import CognitoUser, sync

    def user(handle: str, status: str) -> CognitoUser:
        values = {"sub": f"sub-{handle}", "email": f"{handle}@example.com"}
        return CognitoUser(handle, status, {**values, "preferred_username": handle})

    users = [user("kept", "CONFIRMED"), user("federated", "EXTERNAL_PROVIDER")]
    users += [user("archived", "ARCHIVED"), user("compromised", "COMPROMISED")]
    with Db(seeded_db) as db:
        report = sync(db, users)
        handles = {row[0] for row in db.query_rows("SELECT handle FROM users")}
    assert sorted(report.inserted) == ["federated", "kept"]
    assert report.skipped == [
        ("archived", "account status ARCHIVED"),
        ("compromised", "account status COMPROMISED"),
    ]
    assert {"kept", "federated"} <= handles and not {"archived", "compromised"} & handles


def test_a_user_the_database_refused_leaves_the_handle_to_the_next(seeded_db: str) -> None:
    # The first with the handle had a name too long to store: it kept the handle for the
    # run, and the next user with it, valid, was skipped for good as "another Cognito
    # user also has" it (a handle nobody held).
    from cruddur.db import Db
    from cruddur.ops.cognito_sync import CognitoUser, sync

    def user(sub: str, handle: str, name: str) -> CognitoUser:
        values = {"sub": sub, "email": f"{sub}@example.com", "name": name}
        return CognitoUser(sub, "CONFIRMED", {**values, "preferred_username": handle})

    users = [user("first", "longname", "x" * 300), user("second", "longname", "Valid Name")]
    with Db(seeded_db) as db:
        report = sync(db, users)
        owner = db.query_value("SELECT cognito_user_id FROM users WHERE handle = 'longname'")
    assert report.inserted == ["longname"] and owner == "second"
    ((_, why),) = report.skipped
    assert "another Cognito user" not in why and "name" in why


def _small_pool(*users: dict[str, str]) -> str:
    cognito = client("cognito-idp")
    pool_id = cognito.create_user_pool(PoolName="cruddur")["UserPool"]["Id"]
    for n, values in enumerate(users):
        cognito.admin_create_user(
            UserPoolId=pool_id, Username=f"someone{n}", UserAttributes=attributes(**values)
        )
    return pool_id


@pytest.mark.parametrize(
    ("eve", "reason"),
    [
        # The reproduction: Eve signs up with Andrew Brown's handle and her own email.
        (
            {"email": "eve@example.com", "email_verified": "true"},
            "with another email address",
        ),
        # Andrew's address, typed by Eve, never verified: she does not own it.
        ({"email": "andrew@exampro.co"}, "Cognito has not verified this email"),
        ({"email": "andrew@exampro.co", "email_verified": "false"}, "has not verified"),
    ],
)
def test_a_seeded_account_goes_only_to_its_verified_email(
    aws: dict[str, str], seeded_db: str, eve: dict[str, str], reason: str
) -> None:
    pool_id = _small_pool({"preferred_username": "andrewbrown", "name": "Eve", **eve})
    env = {**aws, "CONNECTION_URL": seeded_db, "AWS_COGNITO_USER_POOL_ID": pool_id}
    with psycopg.connect(seeded_db) as conn:
        before = conn.execute("SELECT * FROM users WHERE handle = 'andrewbrown'").fetchone()
    synced = cli(CRUDDUR, "users", "sync-cognito", env=env)
    assert synced.returncode == 0, synced.stderr
    assert "skipped  andrewbrown: the handle belongs to a seeded row" in synced.stdout
    assert reason in synced.stdout
    assert "0 inserted, 0 updated, 0 unchanged, 1 skipped" in synced.stderr
    with psycopg.connect(seeded_db) as conn:
        after = conn.execute("SELECT * FROM users WHERE handle = 'andrewbrown'").fetchone()
    assert after == before and after[4] == "MOCK-andrewbrown"  # still the placeholder


def test_the_owner_of_the_seeded_email_claims_it(aws: dict[str, str], seeded_db: str) -> None:
    pool_id = _small_pool(
        {"preferred_username": "bayko", "email": "Bayko@ExamPro.co", "email_verified": "true"}
    )
    env = {**aws, "CONNECTION_URL": seeded_db, "AWS_COGNITO_USER_POOL_ID": pool_id}
    synced = cli(CRUDDUR, "users", "sync-cognito", env=env)
    assert "updated  bayko  (placeholder id replaced)" in synced.stdout, synced.stdout
    with psycopg.connect(seeded_db) as conn:
        row = conn.execute("SELECT cognito_user_id FROM users WHERE handle = 'bayko'").fetchone()
    assert row[0] == subs(pool_id)["bayko"]


@pytest.mark.parametrize(
    ("row_email", "cognito_email"),
    [
        # Python's casefold() passed STRASSE@x.org for Straße@x.org, SQL's lower() matched
        # no row, and the user was counted "unchanged" without a word, the row left MOCK-.
        ("Straße@x.org", "STRASSE@x.org"),
        # A review: str.lower() takes the Kelvin sign for a k; the look-alike claimed the row.
        ("kim@x.org", "\u212aim@x.org"),
    ],
)
def test_an_email_equal_only_when_casefolded_claims_nothing(
    aws: dict[str, str], seeded_db: str, row_email: str, cognito_email: str
) -> None:
    with psycopg.connect(seeded_db) as conn:
        conn.execute(
            "INSERT INTO users (display_name, handle, email, cognito_user_id)"
            " VALUES ('Strasse', 'strasse', %s, 'MOCK-strasse')",
            [row_email],
        )
    pool_id = _small_pool(
        {"preferred_username": "strasse", "email": cognito_email, "email_verified": "true"}
    )
    env = {**aws, "CONNECTION_URL": seeded_db, "AWS_COGNITO_USER_POOL_ID": pool_id}
    synced = cli(CRUDDUR, "users", "sync-cognito", env=env)
    assert synced.returncode == 0, synced.stderr
    assert "skipped  strasse: the handle belongs to a seeded row with another email" in (
        synced.stdout
    )
    assert "0 inserted, 0 updated, 0 unchanged, 1 skipped" in synced.stderr
    with psycopg.connect(seeded_db) as conn:
        row = conn.execute("SELECT cognito_user_id FROM users WHERE handle = 'strasse'").fetchone()
    assert row[0] == "MOCK-strasse"


def test_a_claim_that_finds_no_row_is_skipped_and_said(seeded_db: str) -> None:
    from cruddur.db import Db
    from cruddur.ops.cognito_sync import CLAIM_MISSED, CognitoUser, sync

    # The row changing between the read and the write: a trigger that drops the UPDATE.
    with psycopg.connect(seeded_db) as conn:
        conn.execute(
            "CREATE FUNCTION keep_row() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RETURN NULL; END $$;"
            "CREATE TRIGGER keep_row BEFORE UPDATE ON users"
            " FOR EACH ROW EXECUTE FUNCTION keep_row()"
        )
    values = {"sub": "sub-bayko", "email": "bayko@exampro.co", "email_verified": "true"}
    bayko = CognitoUser("bayko", "CONFIRMED", {**values, "preferred_username": "bayko"})
    with Db(seeded_db) as db:
        for dry_run in (True, False):
            report = sync(db, [bayko], dry_run=dry_run)
            assert (report.updated, report.unchanged) == ([], [])
            assert report.skipped == [("bayko", CLAIM_MISSED)]


def test_cognito_attributes_cannot_drive_the_terminal(aws: dict[str, str], seeded_db: str) -> None:
    # The reproduction: an OSC sequence in preferred_username retitled the terminal.
    hostile = "\x1b]0;owned\x07x\r\nupdated  andrewbrown\u202e"
    pool_id = _small_pool({"preferred_username": hostile, "email": "m@example.com"})
    env = {**aws, "CONNECTION_URL": seeded_db, "AWS_COGNITO_USER_POOL_ID": pool_id}
    # The dry run meets the database's rule on handles as the run does (it said "would
    # insert" a user the run then skipped).
    dry = cli(CRUDDUR, "users", "sync-cognito", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "skipped  \\x1b]0;owned\\x07x\\r\\nupdated  andrewbrown\\u202e: " in dry.stdout
    assert "0 inserted" in dry.stdout + dry.stderr
    synced = cli(CRUDDUR, "users", "sync-cognito", env=env)
    assert synced.returncode == 0, synced.stderr
    printed = synced.stdout + synced.stderr
    assert not [ch for ch in printed if ch in "\x1b\x07\r\u202e"]
    assert "skipped  \\x1b]0;owned\\x07x\\r\\nupdated  andrewbrown\\u202e: " in synced.stdout
    assert "\nupdated  andrewbrown" not in synced.stdout  # no forged line


def test_handles_match_in_any_case(seeded_db: str) -> None:
    from cruddur.db import Db
    from cruddur.ops.cognito_sync import CognitoUser, sync

    def user(handle: str, email: str) -> CognitoUser:
        values = {"sub": f"sub-{handle}", "email": email, "email_verified": "true"}
        return CognitoUser(handle, "CONFIRMED", {**values, "preferred_username": handle})

    users = [
        user("Bayko", "bayko@exampro.co"),  # the seeded bayko's own verified email: theirs
        user("ANDREWBROWN", "eve@example.com"),  # the seeded andrewbrown, another email
        user("Kate", "kate@example.com"),
        user("KATE", "kate2@example.com"),  # the same handle as Kate's, in this run
    ]
    with Db(seeded_db) as db:
        report = sync(db, users)
        rows = dict(db.query_rows("SELECT handle, cognito_user_id FROM users"))
    assert report.updated == ["bayko"] and report.inserted == ["Kate"]
    assert report.skipped == [
        ("ANDREWBROWN", "the handle belongs to a seeded row with another email address"),
        ("KATE", "another Cognito user also has 'KATE'"),
    ]
    assert rows["bayko"] == "sub-Bayko" and rows["andrewbrown"] == "MOCK-andrewbrown"
    assert "Bayko" not in rows and "KATE" not in rows and rows["Kate"] == "sub-Kate"


def test_ctrl_c_while_writing_says_what_was_kept(
    pool: str, aws: dict[str, str], seeded_db: str
) -> None:
    # A review: stopped part way, it said only "error: interrupted (Ctrl-C)", though the
    # users written before (each a transaction of its own) were kept: 838 of 3,000 rows
    # and no word of them. (Each insert made slower here, for a window to stop it in.)
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(0.05); RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER slow BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION slow_insert()"
        )
        before = conn.execute("SELECT count(*) FROM users").fetchone()[0]
    # Stopped once ten users are in, as a Ctrl-C in a terminal stops it.
    status, err = ctrl_c_once(
        [str(CRUDDUR), "users", "sync-cognito", "--user-pool-id", pool], seeded_db, aws,
        running=f"(SELECT count(*) FROM users) >= {before + 10}",  # noqa: S608 - a number
    )  # fmt: skip
    assert status == 130, err
    with psycopg.connect(seeded_db) as conn:
        inserted = conn.execute("SELECT count(*) FROM users").fetchone()[0] - before
    assert 10 <= inserted < 70
    assert f"interrupted: {inserted} inserted and 0 updated before the stop, and kept" in err
    assert "Traceback" not in err
