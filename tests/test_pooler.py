"""The API behind a transaction pooler: a real PgBouncer in `pool_mode = transaction`, and
RDS Proxy endpoints recognised by name (README, "Scaling out")."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from api_support import CheckedClient
from helpers import ROOT, cli, run, tables
from pgbouncer_support import PgBouncer
from test_post_confirmation import cognito_event

from cruddur.api import create_app
from cruddur.api.db import primary_db
from cruddur.config import LambdaSettings, Settings
from cruddur.dev_keys import DevKeys
from cruddur.lambdas import post_confirmation, purge_expired
from cruddur.ops.migrations.lock import LOCK_KEY
from cruddur.services.sign_up import SignUpError

CRUDDUR = ROOT / ".venv/bin/cruddur"


@pytest.fixture(scope="module")
def bouncer(server_url: str) -> Iterator[PgBouncer]:
    running = PgBouncer(server_url, pool_size=2)
    yield running
    running.stop()


def _exercise(app, home: Path) -> list[int]:
    """Every read and write path of the API, over and over; the statuses seen."""
    settings = Settings.from_env({"CRUDDUR_HOME": str(home)})
    token = DevKeys(home).mint(settings.auth, "MOCK-andrewbrown", expires_in=3600)
    stranger = DevKeys(home).mint(settings.auth, "no-such-user", expires_in=3600)
    auth = {"Authorization": f"Bearer {token}"}
    api = CheckedClient(app)
    statuses = []
    for n in range(12):
        created = api.post(
            "/api/activities", json={"message": f"m{n}", "ttl": "1-day"}, headers=auth
        )
        statuses.append(created.status_code)
        crud = created.get_json().get("uuid")
        reply = api.post(f"/api/activities/{crud}/reply", json={"message": "re"}, headers=auth)
        statuses.append(reply.status_code)
        home_page = api.get("/api/activities/home?limit=3")
        statuses.append(home_page.status_code)
        if "Link" in home_page.headers:
            next_url = home_page.headers["Link"].split(">")[0].lstrip("<")
            statuses.append(api.get(next_url).status_code)
        statuses.append(api.get("/api/activities/@andrewbrown").status_code)
        shown = api.get(f"/api/activities/{crud}")
        statuses.append(shown.status_code)
        if shown.status_code == 200:
            assert shown.get_json()["activity"]["replies_count"] == 1
        statuses.append(api.get("/api/activities/@nobody-here").status_code)
        forbidden = api.post(
            "/api/activities",
            json={"message": "x", "ttl": "1-day"},
            headers={"Authorization": f"Bearer {stranger}"},
        )
        statuses.append(forbidden.status_code)
    return statuses


def _app(url: str, home: Path, **env: str):
    settings = Settings.from_env({"CRUDDUR_HOME": str(home), "CONNECTION_URL": url, **env})
    return create_app(settings)


def test_every_api_path_works_through_pgbouncer_in_transaction_mode(
    bouncer: PgBouncer, seeded_db: str, tmp_path: Path
) -> None:
    app = _app(bouncer.url_for(seeded_db), tmp_path, CRUDDUR_POOLER="transaction")
    try:
        statuses = _exercise(app, tmp_path)
    finally:
        app.extensions["cruddur.db"].close()
    assert set(statuses) == {200, 201, 403, 404}, statuses


def test_without_pooler_mode_the_same_paths_fail_through_pgbouncer(
    bouncer: PgBouncer, seeded_db: str, tmp_path: Path, caplog
) -> None:
    # The proof that the setting matters: prepared statements kept on one server session
    # are missing on the next one PgBouncer hands out. And what the log says names the
    # setting: a review found "database unreachable … reason withheld" for PgBouncer's
    # "unsupported startup parameter: options".
    caplog.set_level(logging.WARNING, logger="cruddur")
    app = _app(bouncer.url_for(seeded_db), tmp_path)
    try:
        statuses = _exercise(app, tmp_path)
    except Exception:
        statuses = [500]
    finally:
        app.extensions["cruddur.db"].close()
    assert any(status >= 500 for status in statuses)
    said = "\n".join(record.getMessage() for record in caplog.records)
    assert "set CRUDDUR_POOLER=transaction" in said, said
    assert "reason withheld" not in said, said


@pytest.mark.parametrize(
    ("url", "env", "pooled"),
    [
        ("postgresql://u:p@cruddur.proxy-abc123.ca-central-1.rds.amazonaws.com/cruddur", {}, True),
        ("postgresql://u:p@cruddur-db.abc123.ca-central-1.rds.amazonaws.com/cruddur", {}, False),
        ("postgresql://u:p@127.0.0.1:6432/cruddur", {"CRUDDUR_POOLER": "transaction"}, True),
        ("postgresql://u:p@127.0.0.1:6432/cruddur", {}, False),
    ],
)
def test_a_pooler_is_recognised_and_its_pool_keeps_no_prepared_statements(
    url: str, env: dict[str, str], pooled: bool
) -> None:
    settings = Settings.from_env({"CONNECTION_URL": url, **env})
    assert settings.replica.behind_pooler(url) is pooled
    db = primary_db(settings)
    assert ("prepare_threshold" in db._connect_kwargs) is pooled
    assert ("options=" in db.conninfo) is not pooled


def test_an_unknown_pooler_setting_is_refused() -> None:
    from cruddur.config import ConfigError

    with pytest.raises(ConfigError, match="CRUDDUR_POOLER"):
        Settings.from_env({"CRUDDUR_POOLER": "session"})


def test_migrate_refuses_a_pooler_and_takes_the_direct_url(
    bouncer: PgBouncer, empty_db: str
) -> None:
    pooled = {"CONNECTION_URL": bouncer.url_for(empty_db), "CRUDDUR_POOLER": "transaction"}
    refused = run(CRUDDUR, "db", "migrate", env=pooled)
    assert refused.returncode != 0
    assert "MIGRATION_CONNECTION_URL" in refused.stderr
    assert tables(empty_db) == set()  # nothing ran
    direct = cli(CRUDDUR, "db", "migrate", env={**pooled, "MIGRATION_CONNECTION_URL": empty_db})
    assert direct.returncode == 0, direct.stderr
    assert {"users", "activities"} <= tables(empty_db)


def test_migrate_refuses_an_rds_proxy_endpoint() -> None:
    proxy = "postgresql://u:p@cruddur.proxy-abc123.ca-central-1.rds.amazonaws.com:5432/cruddur"
    refused = run(CRUDDUR, "db", "migrate", "--yes", env={"CONNECTION_URL": proxy})
    assert refused.returncode != 0
    assert "the database's own endpoint" in refused.stderr
    assert ":p@" not in refused.stderr


def test_a_cli_verb_works_through_pgbouncer_in_transaction_mode(
    bouncer: PgBouncer, seeded_db: str
) -> None:
    # The CLI's pools kept prepared statements behind a declared pooler: a purge of small
    # batches, with another client's transactions moving its server session, failed with
    # 'prepared statement "_pg3_0" does not exist'.
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO activities (user_uuid, message, created_at, expires_at)"
            " SELECT (SELECT uuid FROM users WHERE handle = 'bayko'), 'old ' || n,"
            "   now() - interval '5 days', now() - interval '2 days'"
            " FROM generate_series(1, 30) AS n"
        )
    pooled = bouncer.url_for(seeded_db)
    stop = threading.Event()

    def other_client() -> None:  # light load: transactions of its own through PgBouncer
        with psycopg.connect(pooled, autocommit=True, prepare_threshold=None) as conn:
            while not stop.is_set():
                conn.execute("SELECT pg_sleep(0.002)")

    load = threading.Thread(target=other_client)
    load.start()
    try:
        env = {"CONNECTION_URL": pooled, "CRUDDUR_POOLER": "transaction"}
        purged = cli(
            CRUDDUR, "db", "purge-expired", "--batch-size", "1", "--nice-ratio", "0", "--yes",
            env=env,
        )  # fmt: skip
    finally:
        stop.set()
        load.join()
    assert purged.returncode == 0, purged.stderr
    assert "deleted 31 cruds" in purged.stderr, purged.stderr


def test_drop_through_a_pooler_says_its_idle_connections_may_be_the_others(
    bouncer: PgBouncer, empty_db: str
) -> None:
    # A review: `db drop` after `db schema-load` through PgBouncer was refused for "1
    # other session", PgBouncer's server connection kept from the load, and said nothing
    # of the pooler.
    env = {"CONNECTION_URL": bouncer.url_for(empty_db), "CRUDDUR_POOLER": "transaction"}
    assert cli(CRUDDUR, "db", "schema-load", env=env).returncode == 0
    refused = cli(CRUDDUR, "db", "drop", env=env)
    assert refused.returncode == 1
    hint = " ".join(refused.stderr.split())
    assert "other session" in hint and "may be its own idle server connections" in hint, hint
    forced = cli(CRUDDUR, "db", "drop", "--force", env=env)
    assert forced.returncode == 0, forced.stderr


def _advisory_locks(url: str) -> int:
    """How many advisory locks any session holds in the database `url` names."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()[0]


def test_migrate_through_an_undetected_pooler_stops_and_leaves_no_lock(
    server_url: str, empty_db: str
) -> None:
    # Without CRUDDUR_POOLER, `db migrate` through PgBouncer took its session lock on one
    # server session and went on on others: the lock stayed on a pooled session, and a
    # later direct migrate or rollback waited 60 s for it, then gave up.
    bouncer = PgBouncer(server_url, pool_size=2, settings={"server_round_robin": "1"})
    try:
        pooled = bouncer.url_for(empty_db)
        # Two server sessions open: round-robin then hands out each in turn.
        warm = [psycopg.connect(pooled) for _ in range(2)]
        for conn in warm:
            conn.execute("SELECT 1")
        for conn in warm:
            conn.commit()  # a session left mid-transaction would be closed, not pooled
            conn.close()
        refused = run(CRUDDUR, "db", "migrate", "--yes", env={"CONNECTION_URL": pooled})
        assert refused.returncode != 0, refused.stderr
        assert "transaction pooler" in refused.stderr, refused.stderr
        assert "MIGRATION_CONNECTION_URL" in refused.stderr, refused.stderr
        held = _advisory_locks(empty_db)
        assert held == 0  # let go on whichever pooled session took it
        direct = run(CRUDDUR, "db", "migrate", "--yes", env={"CONNECTION_URL": empty_db})
        assert direct.returncode == 0, direct.stderr
    finally:
        bouncer.stop()


def test_a_lock_left_on_a_pooled_session_is_let_go_and_the_pooler_named(
    server_url: str, empty_db: str
) -> None:
    # A lock an earlier run left on a pooled server session: the next migrate through the
    # pooler took it again on that session (a second hold), ran, let go of one hold, and
    # exited 0 with the lock still there; a direct migrate then waited for it.
    bouncer = PgBouncer(server_url, pool_size=1)
    try:
        pooled = bouncer.url_for(empty_db)
        with psycopg.connect(pooled, autocommit=True) as conn:  # the one server session
            conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
        refused = run(CRUDDUR, "db", "migrate", "--yes", env={"CONNECTION_URL": pooled})
        assert refused.returncode != 0, refused.stderr
        assert "transaction pooler" in refused.stderr, refused.stderr
        held = _advisory_locks(empty_db)
        assert held == 0
        direct = run(
            CRUDDUR, "db", "migrate", "--yes", "--lock-wait", "2", env={"CONNECTION_URL": empty_db}
        )
        assert direct.returncode == 0, direct.stderr
    finally:
        bouncer.stop()


# -- the Lambdas behind a transaction pooler ---------------------------------------------


@pytest.fixture(scope="module")
def lambda_bouncer(server_url: str, app_roles) -> Iterator[PgBouncer]:
    """PgBouncer letting in the sign-up Lambda's role as well as the owner."""
    name, password = app_roles["lambda"]
    running = PgBouncer(server_url, pool_size=2, users={name: password})
    yield running
    running.stop()


@pytest.fixture
def sign_up_via_bouncer(
    lambda_bouncer: PgBouncer, lambda_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("CONNECTION_URL", lambda_bouncer.url_for(lambda_url))
    monkeypatch.delenv("CONNECTION_SECRET_ARN", raising=False)
    monkeypatch.setenv("CRUDDUR_POOLER", "transaction")
    post_confirmation.close()
    yield
    post_confirmation.close()


def _statement_timeout(url: str) -> str:
    with psycopg.connect(url, prepare_threshold=None) as conn:
        return conn.execute("SHOW statement_timeout").fetchone()[0]


def test_sign_ups_go_through_pgbouncer_in_transaction_mode(
    sign_up_via_bouncer: None, lambda_bouncer: PgBouncer, seeded_db: str
) -> None:
    # It sent `options` (PgBouncer: "unsupported startup parameter") and kept prepared
    # statements, which the next transaction's server session does not have.
    subs = []
    for n in range(8):
        event = cognito_event(preferred_username=f"pooled{n}")
        assert post_confirmation.handler(event, None) is event
        subs.append(event["request"]["userAttributes"]["sub"])
    with psycopg.connect(seeded_db) as conn:
        found = conn.execute(
            "SELECT count(*) FROM users WHERE cognito_user_id = ANY(%s)", [subs]
        ).fetchone()[0]
    assert found == len(subs)
    # The bound was set for the insert's transaction alone, not on a shared session.
    assert _statement_timeout(lambda_bouncer.url_for(seeded_db)) == "0"


def test_the_statement_timeout_holds_through_pgbouncer(
    sign_up_via_bouncer: None,
    seeded_db: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("CRUDDUR_STATEMENT_TIMEOUT", "300")
    caplog.set_level(logging.INFO, logger="cruddur.lambdas.post_confirmation")
    with psycopg.connect(seeded_db) as locker:
        locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")  # held until rollback
        started = time.monotonic()
        with pytest.raises(SignUpError, match="could not be saved"):
            post_confirmation.handler(cognito_event(preferred_username="stuckpooled"), None)
        assert time.monotonic() - started < 3
        locker.rollback()
    assert "statement timeout" in caplog.text
    unstuck = cognito_event(preferred_username="unstuckpooled")
    assert post_confirmation.handler(unstuck, None) is unstuck


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def _expired(url: str, count: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO activities (user_uuid, message, created_at, expires_at)"
            " SELECT (SELECT uuid FROM users WHERE handle = 'bayko'), 'm' || n,"
            "   now() - interval '5 days', now() - interval '2 days'"
            " FROM generate_series(1, %s) AS n",
            [count],
        )


def test_the_purge_goes_through_pgbouncer_in_transaction_mode(
    lambda_bouncer: PgBouncer, seeded_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _expired(seeded_db, 30)
    monkeypatch.setenv("CONNECTION_URL", lambda_bouncer.url_for(seeded_db))
    monkeypatch.delenv("CONNECTION_SECRET_ARN", raising=False)
    monkeypatch.setenv("CRUDDUR_POOLER", "transaction")
    monkeypatch.setenv("CRUDDUR_PURGE_BATCH_SIZE", "4")
    monkeypatch.setenv("CRUDDUR_PURGE_NICE_RATIO", "0")
    summary = purge_expired.handler({}, _Context())
    assert summary["finished"] is True
    assert summary["deleted_cruds"] >= 30 and summary["batches"] >= 8
    assert _statement_timeout(lambda_bouncer.url_for(seeded_db)) == "0"
    # The bound still holds for each batch.
    monkeypatch.setenv("CRUDDUR_STATEMENT_TIMEOUT", "300")
    _expired(seeded_db, 3)
    with psycopg.connect(seeded_db) as locker:
        locker.execute("LOCK TABLE activities IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(RuntimeError, match="statement timeout"):
            purge_expired.handler({}, _Context())
        locker.rollback()


@pytest.mark.parametrize(
    ("host", "env", "pooled"),
    [
        ("cruddur.proxy-abc123.ca-central-1.rds.amazonaws.com", {}, True),
        ("cruddur-db.abc123.ca-central-1.rds.amazonaws.com", {}, False),
        ("127.0.0.1", {"CRUDDUR_POOLER": "transaction"}, True),
        ("127.0.0.1", {"CRUDDUR_POOLER": "none"}, False),
    ],
)
def test_the_lambdas_send_no_options_behind_a_pooler(
    host: str, env: dict[str, str], pooled: bool
) -> None:
    settings = LambdaSettings.from_env(env, post_confirmation.SETTINGS)
    assert settings.behind_pooler(f"postgresql://u:p@{host}:5432/cruddur") is pooled
    connect = post_confirmation.session_settings(pooled, {"statement_timeout": 1000})
    assert ("options" in connect) is not pooled
    assert ("prepare_threshold" in connect) is pooled


def test_a_write_behind_a_lock_is_a_busy_503_through_pgbouncer_too(
    seeded_db: str, admin: psycopg.Connection, tmp_path: Path
) -> None:
    # PgBouncer refuses the `options` the API bounds its statements with on a direct
    # connection; `db roles` makes them the API role's own defaults, which every server
    # connection PgBouncer opens as that role starts with.
    from test_db_roles import _drop_roles, _env_values

    suffix = time.monotonic_ns()
    api_role, lambda_role = f"cruddur_t_api_{suffix}", f"cruddur_t_lambda_{suffix}"
    env_file = tmp_path / "roles.env"
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    options = ["--api-role", api_role, "--lambda-role", lambda_role, "--env-file", str(env_file)]
    try:
        made = cli(CRUDDUR, "db", "roles", *options, env=env)
        assert made.returncode == 0, made.stderr
        api_url = _env_values(env_file)["CRUDDUR_API_CONNECTION_URL"]
        # Letting in the API role alone (the run's server may have no password for the
        # owner, which PgBouncer's scram-sha-256 needs).
        running = PgBouncer(api_url, pool_size=2)
        try:
            app = _app(
                seeded_db, tmp_path, CRUDDUR_POOLER="transaction",
                CRUDDUR_API_CONNECTION_URL=running.url_for(api_url),
            )  # fmt: skip
            settings = Settings.from_env({"CRUDDUR_HOME": str(tmp_path)})
            token = DevKeys(tmp_path).mint(settings.auth, "MOCK-andrewbrown", expires_in=3600)
            api = CheckedClient(app)
            try:
                assert api.get("/api/health").status_code == 200
                write = {"json": {"message": "stuck", "ttl": "1-day"}}
                write["headers"] = {"Authorization": f"Bearer {token}"}
                with psycopg.connect(seeded_db) as locker:
                    locker.execute("LOCK TABLE activities IN SHARE ROW EXCLUSIVE MODE")
                    release = threading.Timer(8, locker.rollback)  # a failure, not a hang
                    release.start()
                    started = time.monotonic()
                    stuck = api.post("/api/activities", **write)
                    took = time.monotonic() - started
                    release.cancel()
                    locker.rollback()
                assert stuck.status_code == 503, stuck.get_json()
                assert stuck.get_json()["error"] == "database_busy"
                assert took < 4.0, took
                assert api.post("/api/activities", **write).status_code == 201
            finally:
                app.extensions["cruddur.feed_cache"].close()
                app.extensions["cruddur.db"].close()
        finally:
            running.stop()
    finally:
        _drop_roles(admin, seeded_db, api_role, lambda_role)
