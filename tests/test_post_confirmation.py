"""The Cognito post-confirmation handler, fed real-format events, against a real PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cruddur.aws import client
from cruddur.lambdas import post_confirmation
from cruddur.lambdas.post_confirmation import SIGN_UP, UNAVAILABLE, SignUpError, handler
from cruddur.urls import parse, with_database

LOGGER = "cruddur.lambdas.post_confirmation"


def cognito_event(trigger: str = SIGN_UP, username: str | None = None, **attributes: Any) -> dict:
    """An event as Cognito sends it (the shape from the Lambda trigger documentation)."""
    sub = attributes.get("sub", str(uuid.uuid4()))
    user_attributes = {
        "sub": sub,
        "email_verified": "true",
        "cognito:user_status": "CONFIRMED",
        "name": "Miles Dyson",
        "preferred_username": "mdyson",
        "email": "miles@cyberdyne.example",
        **attributes,
    }
    return {
        "version": "1",
        "region": "us-east-1",
        "userPoolId": "us-east-1_EXAMPLE",
        "userName": username if username is not None else sub,
        "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": "1example"},
        "triggerSource": trigger,
        "request": {"userAttributes": {k: v for k, v in user_attributes.items() if v is not None}},
        "response": {},
    }


def user_row(url: str, **where: str) -> tuple | None:
    ((column, value),) = where.items()
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"SELECT display_name, email, handle, cognito_user_id FROM users WHERE {column} = %s",  # noqa: S608 - column names from this file only
            [value],
        ).fetchone()


def user_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM users").fetchone()[0]


@pytest.fixture
def url(
    seeded_db: str,
    lambda_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[str]:
    """The handler's environment: CONNECTION_URL on a seeded database, as the Lambda's
    own role (it may only insert and read users). Yields the owner's URL, for checks.
    Afterwards, no password may appear in the logs or the output."""
    monkeypatch.setenv("CONNECTION_URL", lambda_url)
    monkeypatch.delenv("CONNECTION_SECRET_ARN", raising=False)
    caplog.set_level(logging.INFO, logger=LOGGER)
    post_confirmation.close()
    yield seeded_db
    post_confirmation.close()
    captured = capsys.readouterr()
    # A trust-auth test server's URL may have no password to look for.
    for password in (parse(seeded_db).get("password"), parse(lambda_url).get("password")):
        if not password:
            continue
        assert password not in caplog.text
        assert password not in captured.out + captured.err
        assert password not in str(SignUpError(UNAVAILABLE))


def test_a_confirmed_sign_up_becomes_a_user(url: str) -> None:
    event = cognito_event(name="Sarah Connor", preferred_username="sconnor", email="s@c.example")
    assert handler(event, None) is event
    sub = event["request"]["userAttributes"]["sub"]
    assert user_row(url, cognito_user_id=sub) == ("Sarah Connor", "s@c.example", "sconnor", sub)


def test_a_forgotten_password_confirmation_writes_nothing(url: str) -> None:
    before = user_count(url)
    event = cognito_event("PostConfirmation_ConfirmForgotPassword", preferred_username="new1")
    assert handler(event, None) is event
    assert user_count(url) == before
    assert user_row(url, handle="new1") is None


def test_an_apostrophe_in_the_name_is_stored(url: str) -> None:
    handler(cognito_event(name="Miles O'Brien", preferred_username="obrien"), None)
    assert user_row(url, handle="obrien")[0] == "Miles O'Brien"


def test_injection_strings_are_stored_verbatim(url: str) -> None:
    name = "Robert'); DROP TABLE users;--"
    email = "x'); DELETE FROM users; --@example.com"
    handler(cognito_event(name=name, email=email, preferred_username="bobby"), None)
    assert user_row(url, handle="bobby")[:2] == (name, email)
    assert user_count(url) == 4  # the three seed users are still there


def test_a_repeated_event_leaves_one_row(url: str) -> None:
    event = cognito_event(preferred_username="twice")
    handler(event, None)
    handler(event, None)  # Cognito retries a trigger that timed out
    sub = event["request"]["userAttributes"]["sub"]
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT count(*) FROM users WHERE cognito_user_id = %s", [sub])
        assert rows.fetchone()[0] == 1
    assert user_count(url) == 4


def _waiting_on_a_lock(url: str, application: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = %s AND wait_event_type = 'Lock'",
                [application],
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError(f"{application} never waited on a lock")


def test_a_second_delivery_racing_the_first_is_not_told_the_name_is_taken(url: str) -> None:
    # Two deliveries of one event at once (Cognito's retry racing the first) both passed
    # the sub's ON CONFLICT check; the later one met the first's handle and was told
    # "that username is already taken", though its user was recorded. The moment is made
    # here: the handler's insert waits on an uncommitted row's handle (the handle's index
    # comes before the sub's), which then takes the handler's sub and commits.
    event = cognito_event(preferred_username="racer")
    sub = event["request"]["userAttributes"]["sub"]
    with psycopg.connect(url, autocommit=True) as conn:
        order = conn.execute(
            "SELECT array_agg(indexrelid::regclass::text ORDER BY indexrelid::oid) FROM pg_index "
            "WHERE indrelid = 'users'::regclass AND indisunique AND NOT indisprimary"
        ).fetchone()[0]
    assert order.index("users_handle_key") < order.index("users_cognito_user_id_key"), order
    outcome: list[Any] = []
    with psycopg.connect(url) as first:
        first.execute(
            "INSERT INTO users (display_name, email, handle, cognito_user_id) "
            "VALUES ('Miles Dyson', 'miles@cyberdyne.example', 'racer', 'not-yet')"
        )
        racing = threading.Thread(target=lambda: outcome.append(_outcome(event)))
        racing.start()
        _waiting_on_a_lock(url, post_confirmation.APPLICATION_NAME)
        first.execute("UPDATE users SET cognito_user_id = %s WHERE handle = 'racer'", [sub])
        first.commit()
        racing.join(30)
    assert outcome == [event]
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT count(*) FROM users WHERE cognito_user_id = %s", [sub])
        assert rows.fetchone()[0] == 1


def _outcome(event: dict) -> Any:
    try:
        return handler(event, None)
    except Exception as exc:
        return exc


def test_a_taken_handle_is_refused_clearly(url: str) -> None:
    before = user_row(url, handle="bayko")
    with pytest.raises(SignUpError, match=r"^that username is already taken$"):
        handler(cognito_event(preferred_username="bayko", email="other@example.com"), None)
    # The same in another case: `Bayko` could pass for `bayko`.
    with pytest.raises(SignUpError, match=r"^that username is already taken$"):
        handler(cognito_event(preferred_username="BayKo", email="other@example.com"), None)
    assert user_row(url, handle="bayko") == before  # the seed row keeps its placeholder
    assert user_count(url) == 3


def test_a_handle_breaking_the_schema_rule_is_refused_clearly(url: str) -> None:
    with pytest.raises(SignUpError, match=r"^that username is not allowed"):
        handler(cognito_event(preferred_username="no spaces please"), None)
    for unicode_handle in ("José", "日本"):  # letters, but not ASCII: no URL-safe handle
        with pytest.raises(SignUpError, match="is not allowed: use 1 to 64 ASCII letters"):
            handler(cognito_event(preferred_username=unicode_handle), None)
    with pytest.raises(SignUpError, match="name must be 1 to 256"):
        handler(cognito_event(name="x" * 257, preferred_username="longname"), None)
    with pytest.raises(SignUpError, match="cannot be stored"):
        handler(cognito_event(name="nul\x00byte", preferred_username="nul"), None)
    assert user_count(url) == 3


@pytest.mark.parametrize(
    "attributes",
    [{"name": "\ud800"}, {"preferred_username": "lone\udfff"}, {"email": "a\udc00@example.com"}],
)
def test_an_attribute_with_no_utf8_form_is_refused_not_blamed_on_the_database(
    url: str, attributes: dict, caplog: pytest.LogCaptureFixture
) -> None:
    # A lone surrogate (JSON's "\ud800") cannot be encoded: it was logged as an ERROR and
    # answered as a database outage ("could not be saved yet").
    with pytest.raises(SignUpError, match=r"^a sign-up attribute contains characters that"):
        handler(cognito_event(**attributes), None)
    assert "refused user sub=" in caplog.text
    assert "could not record user" not in caplog.text
    assert user_count(url) == 3


@pytest.mark.parametrize(
    ("attributes", "username", "message"),
    [
        ({"sub": None}, "someone", "'sub' attribute is missing"),
        ({"email": None}, None, "'email' attribute is missing"),
        ({"email": "  "}, None, "'email' attribute is missing"),
        ({"preferred_username": None}, None, "'preferred_username' attribute is missing"),
    ],
)
def test_missing_attributes_are_reported(
    url: str,
    attributes: dict,
    username: str | None,
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(SignUpError, match=message):
        handler(cognito_event(username=username, **attributes), None)
    assert user_count(url) == 3
    assert "refused user" in caplog.text


def test_fallbacks_for_the_handle_and_the_name(url: str) -> None:
    # A pool that signs in by username: that name is the handle; no name → the handle.
    handler(cognito_event(username="kyle", preferred_username=None, name=None), None)
    assert user_row(url, handle="kyle")[0] == "kyle"


def test_a_dropped_connection_is_replaced(
    url: str, admin: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    handler(cognito_event(preferred_username="first"), None)
    pid = post_confirmation._conn.info.backend_pid
    # Wait (up to 5 s) until the backend is gone, as after a server restart or failover.
    assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0]
    handler(cognito_event(preferred_username="second"), None)
    assert user_row(url, handle="first") and user_row(url, handle="second")
    assert post_confirmation._conn.info.backend_pid != pid
    assert "reconnecting" in caplog.text


def test_a_warm_function_takes_sign_ups_again_once_the_database_is_writable(
    url: str, admin: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # A review: the session it kept had begun while the database was read-only, and kept
    # refusing every sign-up (hours: as long as the function stayed warm), though a new
    # session took them.
    database = sql.Identifier(parse(url)["dbname"])
    admin.execute(
        sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(database)
    )
    try:
        with pytest.raises(SignUpError, match="could not be saved"):
            handler(cognito_event(preferred_username="while_read_only"), None)
    finally:
        admin.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(
            database))  # fmt: skip
    for handle in ("after_one", "after_two"):
        handler(cognito_event(preferred_username=handle), None)
        assert user_row(url, handle=handle)
    assert user_row(url, handle="while_read_only") is None


class Context:
    """A Lambda context: the invocation's time left, counted down from `ms`."""

    def __init__(self, ms: int) -> None:
        self.ends = time.monotonic() + ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(1000 * (self.ends - time.monotonic())))


class StallingProxy:
    """A TCP proxy to the database that, once stalled, keeps reading what either side
    sends and passes nothing on: a peer that takes the data and never answers (RDS Proxy
    in a failover, a stuck server). `first_reply_delay`: the server's first reply on each
    connection held back that long (a sound server slow to let anyone in). Closing it
    closes every socket it holds."""

    def __init__(self, host: str, port: int, first_reply_delay: float = 0.0) -> None:
        self.upstream = (host, port)
        self.first_reply_delay = first_reply_delay
        self.stalled = threading.Event()
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client = self.listener.accept()[0]
                server = socket.create_connection(self.upstream)
                self.sockets += [client, server]
                for source, sink, hold in (
                    (client, server, 0.0), (server, client, self.first_reply_delay),
                ):  # fmt: skip
                    threading.Thread(
                        target=self._pump, args=(source, sink, hold), daemon=True
                    ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, hold: float) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if hold:
                    time.sleep(hold)
                    hold = 0.0
                if not self.stalled.is_set():
                    sink.sendall(data)

    def close(self) -> None:
        self.listener.close()
        for each in self.sockets:
            each.close()


def test_a_server_that_takes_the_insert_and_never_answers_fails_it_in_time(
    url: str, lambda_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # statement_timeout runs on the server and tcp_user_timeout needs unacknowledged data:
    # neither ends this wait, and the warm connection's insert waited for ever.
    params = parse(lambda_url)
    proxy = StallingProxy(params["host"], int(params["port"]))
    try:
        via_proxy = make_conninfo(lambda_url, host="127.0.0.1", port=str(proxy.port))
        monkeypatch.setenv("CONNECTION_URL", via_proxy)
        handler(cognito_event(preferred_username="before"), Context(5000))  # connected
        kept = post_confirmation._conn
        proxy.stalled.set()
        outcome: list[BaseException | None] = []

        def sign_up() -> None:
            try:
                handler(cognito_event(preferred_username="stalled"), Context(2500))
                outcome.append(None)
            except BaseException as exc:  # handed to the test's thread
                outcome.append(exc)

        started = time.monotonic()
        signing_up = threading.Thread(target=sign_up, daemon=True)
        signing_up.start()
        signing_up.join(10)
        took = time.monotonic() - started
        assert outcome, "the sign-up was still waiting after 10 s"
        (raised,) = outcome
        assert isinstance(raised, SignUpError) and str(raised) == UNAVAILABLE
        assert took < 2.5  # 2.5 s left, less the 0.5 s kept to answer: cut at 2.0 (+ a tick)
        assert "could not record user" in caplog.text and "within" in caplog.text
        assert kept is not None and kept.closed and post_confirmation._conn is None
        proxy.stalled.clear()  # the next sign-up opens a new connection
        handler(cognito_event(preferred_username="after"), Context(5000))
    finally:
        proxy.close()
    assert user_row(url, handle="before") and user_row(url, handle="after")
    assert not user_row(url, handle="stalled")


def test_a_malformed_setting_fails_the_sign_up_and_names_itself(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # config.py parses the Lambda's settings as it parses the CLI's: no silent default.
    monkeypatch.setenv("CRUDDUR_CONNECT_TIMEOUT", "2s")
    with pytest.raises(SignUpError, match="could not be saved"):
        handler(cognito_event(preferred_username="timely"), None)
    assert "CRUDDUR_CONNECT_TIMEOUT must be a whole number" in caplog.text
    assert not user_row(url, handle="timely")


def test_the_statement_timeout_ends_a_stuck_insert(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CRUDDUR_STATEMENT_TIMEOUT", "300")
    with psycopg.connect(url) as locker:
        locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")  # held until rollback
        with pytest.raises(SignUpError, match="could not be saved"):
            handler(cognito_event(preferred_username="stuck"), None)
        locker.rollback()
    assert "statement timeout" in caplog.text
    # The connection survived the cancelled statement and serves the next sign-up.
    handler(cognito_event(preferred_username="unstuck"), None)
    assert user_row(url, handle="unstuck")


def test_an_unreachable_database_fails_the_sign_up_without_leaking_the_password(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    params = parse(url)
    monkeypatch.setenv(
        "CONNECTION_URL", f"postgresql://cruddur:Sup3r-s3cret@127.0.0.1:1/{params['dbname']}"
    )
    with pytest.raises(SignUpError) as caught:
        handler(cognito_event(), None)
    assert str(caught.value) == UNAVAILABLE
    assert "Sup3r-s3cret" not in caplog.text
    assert "cruddur:***@127.0.0.1:1" in caplog.text
    assert "could not record user" in caplog.text


def test_the_url_can_come_from_secrets_manager(
    url: str, aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    params = parse(url)
    secret = {
        "engine": "postgres",
        "username": params["user"],
        "password": params.get("password", ""),
        "host": params["host"],
        "port": int(params["port"]),
        "dbname": params["dbname"],
    }
    arn = client("secretsmanager").create_secret(Name="cruddur/db", SecretString=json.dumps(secret))
    monkeypatch.delenv("CONNECTION_URL")
    monkeypatch.setenv("CONNECTION_SECRET_ARN", arn["ARN"])
    handler(cognito_event(preferred_username="fromsecret"), None)
    assert user_row(url, handle="fromsecret")


def test_an_rds_managed_secret_completes_the_url(
    url: str, aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # RDS-managed master secrets hold only the user and password; the URL gives the rest.
    params = parse(url)
    secret = {"username": params["user"], "password": params.get("password", "")}
    arn = client("secretsmanager").create_secret(Name="rds!db-1", SecretString=json.dumps(secret))
    passwordless = f"postgresql://{params['host']}:{params['port']}/{params['dbname']}"
    monkeypatch.setenv("CONNECTION_URL", passwordless)
    monkeypatch.setenv("CONNECTION_SECRET_ARN", arn["ARN"])
    handler(cognito_event(preferred_username="managed"), None)
    assert user_row(url, handle="managed")


def test_the_urls_host_wins_over_the_secrets(
    url: str, aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A secret in RDS's format names the instance (`rds create-proxy` makes one so); with
    # CONNECTION_URL at the proxy, the secret's host replaced the proxy's and every
    # sign-up went straight to the instance. Here the secret's host is one where nothing
    # listens: only the URL's reaches the database.
    params = parse(url)
    secret = {
        "engine": "postgres",
        "username": params["user"],
        "password": params.get("password", ""),
        "host": "127.0.0.1",
        "port": 1,
        "dbname": "elsewhere",
    }
    arn = client("secretsmanager").create_secret(Name="cruddur/px", SecretString=json.dumps(secret))
    passwordless = f"postgresql://{params['host']}:{params['port']}/{params['dbname']}"
    monkeypatch.setenv("CONNECTION_URL", passwordless)
    monkeypatch.setenv("CONNECTION_SECRET_ARN", arn["ARN"])
    handler(cognito_event(preferred_username="viaproxy"), None)
    assert user_row(url, handle="viaproxy")


def test_a_url_without_a_database_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # libpq would default the database to the user's name (the original's bug B18).
    monkeypatch.setenv("CONNECTION_URL", with_database(url, ""))
    with pytest.raises(SignUpError, match="could not be saved"):
        handler(cognito_event(), None)
    assert "names no database" in caplog.text


def test_a_database_name_the_server_would_cut_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The server cuts a name at 63 bytes: the sign-up would go to another database.
    monkeypatch.setenv("CONNECTION_URL", with_database(url, "d" * 64))
    with pytest.raises(SignUpError, match="could not be saved"):
        handler(cognito_event(), None)
    assert "is 64 bytes long (UTF-8)" in caplog.text


def test_the_handler_imports_only_what_it_needs() -> None:
    code = (
        "import sys, cruddur.lambdas.post_confirmation\n"
        "print('\\n'.join(sorted(m for m in sys.modules)))"
    )
    loaded = set(subprocess.check_output([sys.executable, "-c", code], text=True).split())
    assert "psycopg" in loaded
    heavy = {"click", "rich", "boto3", "botocore", "psycopg_pool", "sqlparse", "cruddur.db"}
    assert not heavy & loaded
    assert {m for m in loaded if m.startswith("cruddur")} == {
        "cruddur",
        "cruddur.config",
        "cruddur.errors",
        "cruddur.urls",
        "cruddur.names",
        "cruddur.rds_tls",
        "cruddur.path_walk",
        "cruddur.groups",
        "cruddur.deadlines",
        "cruddur.connecting",
        "cruddur.lambdas",
        "cruddur.lambdas.post_confirmation",
        "cruddur.services",
        "cruddur.services.sign_up",
    }


def test_an_unreadable_secret_fails_the_sign_up_clearly(
    url: str, aws: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("CONNECTION_URL")
    monkeypatch.setenv("CONNECTION_SECRET_ARN", "cruddur/no-such-secret")
    with pytest.raises(SignUpError, match="could not be saved"):
        handler(cognito_event(), None)
    assert "ResourceNotFoundException" in caplog.text
    assert post_confirmation._conninfo is None  # read again on the next invocation


@contextlib.contextmanager
def never_answering() -> Iterator[tuple[int, list[socket.socket]]]:
    """A port that accepts connections and never answers: (the port, those accepted)."""
    accepted: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])  # and never answered

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        listener.close()
        for each in accepted:
            each.close()


def _secret_at(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONNECTION_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CONNECTION_SECRET_ARN", "cruddur/a-secret")
    for name, value in (
        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ):  # fmt: skip
        monkeypatch.setenv(name, value)


def test_a_secrets_manager_that_never_answers_is_asked_once(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore's max_attempts counts retries: 1 was a second read, twice (1 s + 2 s) before
    # the database's own 2 s, past Cognito's 5 s (the sign-up then timed out unexplained).
    with never_answering() as (port, accepted):
        _secret_at(port, monkeypatch)
        with pytest.raises(SignUpError, match="could not be saved"):
            handler(cognito_event(), None)
    assert len(accepted) == 1


def test_the_secret_is_read_in_what_the_invocation_has_left(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 4 s left, 0.5 s kept to answer and 2 s for the connect: 1.5 s to read the secret
    # (0.5 s to connect, 1 s for the answer), not its own 1 s and 2 s.
    with never_answering() as (port, _):
        _secret_at(port, monkeypatch)
        started = time.monotonic()
        with pytest.raises(SignUpError, match="could not be saved"):
            handler(cognito_event(), Context(4000))
        took = time.monotonic() - started
    assert 0.9 < took < 1.5


def _lambda_role_at(lambda_url: str, hosts: str) -> str:
    """The Lambda role's URL (user, password, database) on `hosts` (host:port[,…])."""
    params = parse(lambda_url)
    user, password = params["user"], params.get("password", "")
    return f"postgresql://{user}:{password}@{hosts}/{params['dbname']}"


def test_one_connect_bound_covers_every_address_tried(
    url: str, lambda_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # connect_timeout bounds each address: a host named twice (or a name with two
    # addresses) behind a port that never answers took 4 s of the 2 s allowed.
    with never_answering() as (port, accepted):
        twice = f"127.0.0.1:{port},127.0.0.1:{port}"
        monkeypatch.setenv("CONNECTION_URL", _lambda_role_at(lambda_url, twice))
        started = time.monotonic()
        with pytest.raises(SignUpError, match="could not be saved"):
            handler(cognito_event(), Context(5000))
        took = time.monotonic() - started
    assert len(accepted) == 1
    assert 1.9 < took < 2.5


@pytest.mark.parametrize(("connect_timeout", "left_ms"), [("9", 5000), ("5", 5000), ("3", 3000)])
def test_a_longer_connect_timeout_still_ends_before_the_deadline(
    url: str, lambda_url: str, monkeypatch: pytest.MonkeyPatch, connect_timeout: str, left_ms: int
) -> None:
    # The connect's bound was rounded up to whole seconds: 4.5 s left became 5 s, and the
    # invocation ran out of time (the original's "Task timed out", B10) instead of saying
    # the sign-up could not be saved.
    monkeypatch.setenv("CRUDDUR_CONNECT_TIMEOUT", connect_timeout)
    with never_answering() as (port, _):
        monkeypatch.setenv("CONNECTION_URL", _lambda_role_at(lambda_url, f"127.0.0.1:{port}"))
        context = Context(left_ms)
        with pytest.raises(SignUpError, match="could not be saved"):
            handler(cognito_event(), context)
        assert context.get_remaining_time_in_millis() > 0


def test_the_connect_waits_the_whole_connect_timeout_when_there_is_time(
    url: str, lambda_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rounded down from the few µs after its start, 3 s became 2 s.
    monkeypatch.setenv("CRUDDUR_CONNECT_TIMEOUT", "3")
    with never_answering() as (port, _):
        monkeypatch.setenv("CONNECTION_URL", _lambda_role_at(lambda_url, f"127.0.0.1:{port}"))
        started = time.monotonic()
        with pytest.raises(SignUpError, match="could not be saved"):
            handler(cognito_event(), Context(9000))
        took = time.monotonic() - started
    assert took >= 2.9, took


# -- what the log and the person signing up see ------------------------------------------

HOSTILE_HANDLE = "<img src=x onerror=alert(1)>"


@pytest.mark.parametrize(
    ("attributes", "username"),
    [
        ({"preferred_username": "bayko"}, None),  # taken
        ({"preferred_username": HOSTILE_HANDLE}, None),  # breaks the schema's rule
        ({"preferred_username": None}, "miles.dyson@cyberdyne.example"),  # an email as handle
        ({"preferred_username": None, "sub": None}, "miles.dyson@cyberdyne.example"),
    ],
)
def test_refusals_log_the_sub_and_show_none_of_the_input(
    url: str, attributes: dict, username: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    event = cognito_event(username=username, **attributes)
    given = event["request"]["userAttributes"]
    with pytest.raises(SignUpError) as refused:
        handler(event, None)
    shown = str(refused.value)
    typed = [given.get("preferred_username"), given.get("email"), given.get("name"), username]
    for value in filter(None, typed):
        assert value not in shown  # Cognito shows this page to the person signing up
        assert value not in caplog.text  # personal data stays out of CloudWatch
    assert "refused user sub=" in caplog.text
    if given.get("sub"):
        assert given["sub"] in caplog.text


def test_a_recorded_or_failed_sign_up_logs_only_the_sub(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    event = cognito_event(name="Miles Dyson", preferred_username="mdyson")
    handler(event, None)
    sub = event["request"]["userAttributes"]["sub"]
    assert f"recorded user sub={sub}" in caplog.text
    # A database failure whose DETAIL quotes the row (a rule the handler does not know).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE users ADD CONSTRAINT no_miles CHECK (display_name <> 'Miles')")
    with pytest.raises(SignUpError, match=UNAVAILABLE):
        handler(cognito_event(name="Miles", preferred_username="miles2"), None)
    assert "could not record user sub=" in caplog.text and "no_miles" in caplog.text
    for personal in ("miles@cyberdyne.example", "mdyson", "miles2", "Miles Dyson", "(Miles"):
        assert personal not in caplog.text


def test_malformed_otlp_headers_leave_the_lambda_untraced_and_the_key_unlogged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.honeycomb.io")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team:SECRETKEY123")
    monkeypatch.setattr(post_confirmation, "_traced", False)  # not looked at yet
    caplog.set_level(logging.DEBUG)
    assert post_confirmation._tracing() is None  # sign-ups go on, untraced
    assert "traces off: OTEL_EXPORTER_OTLP_HEADERS: entry 1" in caplog.text
    assert "SECRETKEY123" not in caplog.text


def test_a_malformed_sdk_setting_leaves_the_lambda_untraced_and_signing_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The SDK raised on the first invocation (the sign-up failed), then ran untraced.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    monkeypatch.setattr(post_confirmation, "_traced", False)
    caplog.set_level(logging.DEBUG)
    assert post_confirmation._tracing() is None
    assert "traces off: OTEL_BSP_MAX_EXPORT_BATCH_SIZE (512) must not be" in caplog.text


@pytest.mark.parametrize(
    "malformed",
    [
        # libpq's own message quotes the token it could not decode: here, the password.
        "postgresql://postgres:se%zzcretPW@127.0.0.1:5432/db",
        # libpq would take `postgres:se` for host and port, the rest for the database.
        "postgresql://postgres:se/zzcretPW@127.0.0.1:5432/db",
        "postgresql://postgres:se@zzcretPW@127.0.0.1:5432/db",
    ],
)
def test_a_malformed_url_is_reported_as_malformed_without_its_text(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, malformed: str
) -> None:
    monkeypatch.setenv("CONNECTION_URL", malformed)
    with pytest.raises(SignUpError) as caught:
        handler(cognito_event(preferred_username="garbled"), None)
    assert str(caught.value) == UNAVAILABLE
    assert "CONNECTION_URL is malformed" in caplog.text
    assert "zzcretPW" not in caplog.text
    assert caught.value.__cause__ is not None and "zzcretPW" not in repr(caught.value.__cause__)


def test_a_refused_account_id_is_logged_cut_to_64_characters(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    long_sub = "x" * 500  # not a Cognito id: the schema refuses it
    caplog.set_level(logging.INFO, logger=LOGGER)
    with pytest.raises(SignUpError, match="the account id is malformed"):
        handler(cognito_event(sub=long_sub), None)
    assert f"refused user sub={'x' * 64}:" in caplog.text
    assert "x" * 65 not in caplog.text


@pytest.mark.parametrize(
    "event",
    [
        None,
        ["not", "an", "object"],
        "PostConfirmation_ConfirmSignUp",
        {"triggerSource": SIGN_UP, "request": "userAttributes"},
        {"triggerSource": SIGN_UP, "request": {"userAttributes": ["sub", "email"]}},
        {"triggerSource": SIGN_UP, "request": {"userAttributes": {"sub": 7, "email": None}}},
        {"triggerSource": SIGN_UP},
    ],
)
def test_an_event_of_another_shape_is_refused_clearly(
    url: str, event: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # No AttributeError from deep inside: a sentence for the person, a line in the log.
    with pytest.raises(SignUpError, match=r"malformed|missing"):
        handler(event, None)
    assert user_count(url) == 3
    assert "refused" in caplog.text


def test_an_unknown_trigger_of_any_type_writes_nothing_and_logs_no_junk(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    for source in (["a", "list"], "x\n" * 1000, None):
        event = {"triggerSource": source, "request": {"userAttributes": {}}}
        assert handler(event, None) is event
    assert user_count(url) == 3
    assert "x\nx" not in caplog.text and "['a'" not in caplog.text


def test_a_malformed_otlp_endpoint_leaves_sign_ups_untraced_and_says_so_once(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A Lambda has nobody to ask: the sign-up is recorded, untraced, and the log says
    # why once (not on each invocation), without the URL's key.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://user:key9876@collector:abc")
    monkeypatch.setattr(post_confirmation, "_traced", False)  # looked at afresh; put back after
    for handle in ("untraced1", "untraced2"):
        handler(cognito_event(preferred_username=handle), None)
        assert user_row(url, handle=handle)
    said = [
        r.getMessage() for r in caplog.records if r.name == LOGGER and "traces" in r.getMessage()
    ]
    assert said == [
        'traces off: OTEL_EXPORTER_OTLP_ENDPOINT: the port "abc" is not a number '
        "(want http(s)://host[:port][/path])"
    ]
    assert "key9876" not in caplog.text
