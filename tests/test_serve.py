"""`cruddur serve` over real HTTP, under each WSGI server, with a token from `cruddur dev token`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import jwt
import psycopg
import pytest
from helpers import ROOT, cli, run
from server_support import Served, free_port, request

from cruddur.urls import parse, with_database
from cruddur.web.assets import STATIC

CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"


def test_serve_dev_decides_sign_in_by_the_address_it_serves(seeded_db: str, tmp_path) -> None:
    # CRUDDUR_HOST=0.0.0.0 (from a .env), --host 127.0.0.1: the banner said the dev key
    # pair worked, and the app, reading CRUDDUR_HOST, refused every dev token.
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path), "CRUDDUR_HOST": "0.0.0.0"}
    served = Served("--dev", "--host", "127.0.0.1", env=env)
    try:
        served.wait_healthy()
        status, _, body = request(f"{served.base}/api/dev/users")
        assert status == 200 and b"andrewbrown" in body
    finally:
        output = served.stop()
    assert "nobody can sign in" not in output, output


def test_serve_dev_runs_flasks_reloader(seeded_db: str, tmp_path) -> None:
    # Its own process group: the reloader's child goes down with it. With metrics on, the
    # reloader's parent (which serves nothing) took the metrics port, and the child that
    # serves counted into a registry nobody could read.
    metrics_port = free_port()
    env = {
        "CONNECTION_URL": seeded_db,
        "CRUDDUR_HOME": str(tmp_path),
        "CRUDDUR_METRICS_PORT": str(metrics_port),
    }
    served = Served("--dev", env=env)
    try:
        served.wait_healthy()
        for _ in range(3):
            status, _, body = request(f"{served.base}/api/activities/home")
            assert status == 200 and json.loads(body)
        status, _, scraped = request(f"http://127.0.0.1:{metrics_port}/metrics")
        # werkzeug's own request line printed the query whole, a token sent there too.
        assert request(f"{served.base}/api/activities/@bayko?access_token=SECRETQ")[0] == 200
        # The page's files are read once: an edit to one went unseen until a restart by
        # hand. (Its time changed, not its bytes: other tests read it.)
        os.utime(STATIC / "views.js")
        assert served.saw("views.js', reloading", timeout=10), served.output()
        served.wait_healthy()
    finally:
        output = served.stop()
    assert "SECRETQ" not in output and "GET /api/activities/@bayko HTTP/1.1" in output, output
    assert "Debugger is active" in output or "reloader" in output.lower()
    # Request lines for people, not JSON, in development.
    assert "INFO cruddur.request: GET /api/activities/home 200" in output
    assert status == 200 and "cannot listen" not in output, output
    counted = [
        line
        for line in scraped.decode().splitlines()
        if line.startswith("cruddur_http_requests_total{")
        and 'route="/api/activities/home"' in line
        and 'status="200"' in line
    ]
    assert [float(line.rsplit(" ", 1)[1]) for line in counted] == [3.0], scraped.decode()


def _environ_names(pid: int) -> set[bytes]:
    """The names in a process's environment."""
    return {v.split(b"=")[0] for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")}


@pytest.mark.parametrize(
    ("server", "own_role"), [("gunicorn", False), ("granian", True)], ids=["gunicorn", "granian"]
)
def test_serve_answers_over_http(
    server: str, own_role: bool, seeded_db: str, api_url: str, admin, tmp_path
) -> None:
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path)}
    if own_role:  # the API as its own role; otherwise as the owner, with a warning
        env["CRUDDUR_API_CONNECTION_URL"] = api_url
    env["PROD_CONNECTION_URL"] = "postgresql://master:prodsecret@db.example.com/cruddur"
    env["CRUDDUR_METRICS_PORT"] = str(free_port())
    served = Served("--server", server, "--workers", "2", "--threads", "2", env=env)
    base = served.base
    try:
        served.wait_healthy()
        # A review: the workers held the owner's and production's URLs in their
        # environment (/proc/PID/environ), though they log in as the API's role; and the
        # metrics exporter, which reads no database, held them all.
        exporters = 0
        main = served.process.pid
        children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
        # The exporter runs in a session of its own: not among the group's leftovers.
        for pid in {*(p for p in served.leftovers() if p != main), *map(int, children)}:
            with contextlib.suppress(FileNotFoundError):  # a process gone meanwhile
                names = _environ_names(pid)
                assert b"PROD_CONNECTION_URL" not in names, pid
                if b"cruddur.telemetry.exporter" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    exporters += 1
                    assert not [n for n in names if n.endswith(b"CONNECTION_URL")], names
                else:
                    assert (b"CONNECTION_URL" in names) is not own_role, pid
        assert exporters == 1
        status, headers, body = request(f"{base}/api/activities/home?limit=2")
        assert status == 200 and headers["content-type"] == "application/json"
        assert len(json.loads(body)) == 2 and 'rel="next"' in headers["link"]
        minted = run(CRUDDUR, "dev", "token", "--handle", "andrewbrown", env=env)
        assert minted.returncode == 0, minted.stderr
        status, _, body = request(
            f"{base}/api/activities",
            data=json.dumps({"message": f"via {server}", "ttl": "1-hour"}).encode(),
            headers={
                "Authorization": f"Bearer {minted.stdout.strip()}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        assert status == 201, body
        assert json.loads(body)["handle"] == "andrewbrown"
        # A request line gunicorn refuses (a byte outside ASCII): its warning quoted it
        # whole, a token in its query too.
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(b"GET /api/activities/home?access_token=SECRETQ&x=\xc3\xa9 HTTP/1.1\r\n"
                         b"Host: x\r\nConnection: close\r\n\r\n")  # fmt: skip
            refused = b"400" if server == "gunicorn" else b"200"  # granian takes it
            assert sock.recv(100).split()[1] == refused
        users = admin.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'cruddur-api'",
            [parse(seeded_db)["dbname"]],
        ).fetchall()
        expected = parse(api_url if own_role else seeded_db)["user"]
        assert users == [(expected,)]
    finally:
        output = served.stop()
    assert "password" not in output.lower() or "***" in output
    assert "SECRETQ" not in output, output
    assert seeded_db.split("@")[0] not in output  # the URL's credentials are never printed
    assert parse(api_url)["password"] not in output
    assert ("who can change the schema" in output) is not own_role
    # gunicorn 25+ opened one control socket per user (~/.gunicorn/gunicorn.ctl), which a
    # second server took over: none is opened.
    assert "Control socket" not in output and "control server" not in output.lower(), output


def test_serve_dev_ends_with_its_reloader_however_it_ends(seeded_db: str, tmp_path) -> None:
    # A review: the reloader killed outright (kill -9, an OOM kill), the child it started
    # kept serving on the port under init, and a new `serve --dev` found the port taken.
    served = Served("--dev", env={"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path)})
    try:
        served.wait_healthy()
        reloader = served.process.pid
        os.kill(reloader, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                request(f"{served.base}/api/health")
            except OSError:
                break  # nothing listens: the child is gone
            time.sleep(0.2)
        else:
            raise AssertionError("the reloader's child still serves after it was killed")
    finally:
        served.stop()


@pytest.mark.parametrize("closed", [">&-", "2>&-", ">&- 2>&-"])
def test_serve_started_with_its_output_closed_still_serves(
    seeded_db: str, tmp_path, closed: str
) -> None:
    # A review: `cruddur serve >&-` ended in "unexpected AttributeError: 'NoneType' object
    # has no attribute 'flush'" (Python leaves sys.stdout None), and nothing served.
    port = free_port()
    env = {**os.environ, "CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path)}
    env.pop("PROD_CONNECTION_URL", None)
    server = subprocess.Popen(
        ["bash", "-c", f"exec {CRUDDUR} serve --port {port} --workers 1 {closed}"],
        env=env, start_new_session=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 40
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status = request(f"http://127.0.0.1:{port}/api/health")[0]
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200, f"exited {server.returncode}" if server.poll() is not None else status
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_serve_warns_when_the_api_roles_url_can_change_the_schema(
    seeded_db: str, api_url: str, admin
) -> None:
    # CRUDDUR_API_CONNECTION_URL naming a role that owns a table: serve said only
    # "API role: …", where the owner's own URL gets a warning.
    from test_db_roles import _owner_of_activities

    from cruddur.cli.serve import _api_role_can_change_schema
    from cruddur.config import Settings
    from cruddur.targets import resolve
    from cruddur.urls import with_user

    def check(api: str) -> bool:
        settings = Settings.from_env(
            {"CONNECTION_URL": seeded_db, "CRUDDUR_API_CONNECTION_URL": api}
        )
        return _api_role_can_change_schema(settings, resolve(settings), (3, True))

    assert check(api_url) is False
    with _owner_of_activities(admin, seeded_db) as owner:
        assert check(with_user(seeded_db, owner, "kept")) is True
        # A NOINHERIT member of the owner may still SET ROLE to it; a CREATEROLE role may
        # grant itself that membership (the owner being no superuser): neither was warned of.
        member, creator = f"{owner}_member", f"{owner}_creator"
        for name, attributes in ((member, "LOGIN NOINHERIT"), (creator, "LOGIN CREATEROLE")):
            admin.execute(f"CREATE ROLE \"{name}\" {attributes} PASSWORD 'kept'")
        admin.execute(f'GRANT "{owner}" TO "{member}"')
        try:
            assert check(with_user(seeded_db, member, "kept")) is True
            assert check(with_user(seeded_db, creator, "kept")) is True
        finally:
            for name in (member, creator):
                admin.execute(f'DROP ROLE "{name}"')
    # A schema anyone may create in: the API's role could make tables of its own there.
    with psycopg.connect(seeded_db, autocommit=True) as there:
        there.execute("CREATE SCHEMA open_to_all")
        there.execute("GRANT USAGE, CREATE ON SCHEMA open_to_all TO PUBLIC")
        try:
            assert check(api_url) is True
        finally:
            there.execute("DROP SCHEMA open_to_all")


def test_serve_given_only_the_api_roles_url_serves_that_database(
    seeded_db: str, api_url: str, admin, tmp_path
) -> None:
    # A container given the API's role alone (compose.yaml): no owner's password, and no
    # embedded server started beside it (serve started one, checked and named that
    # database, while its workers read the other).
    env = {"CRUDDUR_API_CONNECTION_URL": api_url, "CRUDDUR_HOME": str(tmp_path)}
    served = Served("--workers", "1", env=env, unset=("PROD_CONNECTION_URL", "CONNECTION_URL"))
    try:
        served.wait_healthy()
        status, _, body = request(f"{served.base}/api/activities/home?limit=2")
        assert status == 200 and len(json.loads(body)) == 2
        users = admin.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'cruddur-api'",
            [parse(seeded_db)["dbname"]],
        ).fetchall()
        assert users == [(parse(api_url)["user"],)]
    finally:
        output = served.stop()
    assert "the API's role, CRUDDUR_API_CONNECTION_URL" in output, output
    assert "embedded" not in output and "no schema" not in output, output
    assert parse(api_url)["password"] not in output
    # The token serve's banner offers is minted from that database's users too.
    minted = cli(CRUDDUR, "dev", "token", "--handle", "AndrewBrown", env=env)
    assert minted.returncode == 0 and "embedded" not in minted.stderr, minted.stderr
    claims = jwt.decode(minted.stdout.strip(), options={"verify_signature": False})
    with psycopg.connect(seeded_db) as conn:
        sub = conn.execute("SELECT cognito_user_id FROM users WHERE handle = 'andrewbrown'")
        assert claims["sub"] == sub.fetchone()[0]
    assert not (tmp_path / "postgres").exists()  # no embedded server's folder made


def test_dev_token_needs_a_known_handle(seeded_db: str, tmp_path) -> None:
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path)}
    unknown = cli(CRUDDUR, "dev", "token", "--handle", "nobody", env=env)
    assert unknown.returncode == 1 and "no user has the handle 'nobody'" in unknown.stderr
    both = cli(CRUDDUR, "dev", "token", "--handle", "bayko", "--sub", "x", env=env)
    assert both.returncode == 2 and "exactly one" in both.stderr
    # Any case finds the user (handles are unique whatever their case); the token names
    # the handle as stored.
    cased = cli(CRUDDUR, "dev", "token", "--handle", "BayKo", env=env)
    assert cased.returncode == 0, cased.stderr
    claims = jwt.decode(cased.stdout.strip(), options={"verify_signature": False})
    with psycopg.connect(seeded_db) as conn:
        row = conn.execute("SELECT cognito_user_id FROM users WHERE handle = 'bayko'").fetchone()
    assert (claims["sub"], claims["username"]) == (row[0], "bayko")


def test_serve_help_explains_itself() -> None:
    shown = run(CRUDDUR, "serve", "--help")
    assert shown.returncode == 0
    for words in ("--server", "gunicorn", "--workers", "--dev", "4567"):
        assert words in shown.stdout


def test_a_worker_count_past_the_limit_is_refused_before_anything_starts() -> None:
    # --workers 3000 filled the machine's memory (the OOM killer took a test run's
    # worker); 100000 ended in a traceback (too many open files).
    from click.testing import CliRunner

    from cruddur.cli import main

    for option in ("--workers", "--threads"):
        refused = CliRunner().invoke(main, ["serve", option, "100000"])
        assert refused.exit_code == 2
        assert "100000 is not in the range" in refused.output, refused.output


def test_the_worker_factory_tunes_the_collector(monkeypatch, tmp_path) -> None:
    import gc

    from cruddur.api import WORKER_GC_THRESHOLD, create_worker_app

    monkeypatch.setenv("CRUDDUR_HOME", str(tmp_path))
    before = gc.get_threshold()
    try:
        app = create_worker_app()
        assert app.name == "cruddur"
        assert gc.get_threshold() == (WORKER_GC_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        # Werkzeug's debugger runs code for anyone who reaches it.
        (["--dev", "--host", "0.0.0.0"], {}, "only on a loopback address (127.0.0.1), not 0.0.0.0"),
        # The dev key pair signs tokens anyone with this checkout can mint.
        (
            ["--host", "0.0.0.0"],
            {"CRUDDUR_AUTH": "dev"},
            "development key pair signs in only on a loopback address",
        ),
        ([], {"CRUDDUR_HOST": "192.0.2.1", "CRUDDUR_AUTH": "dev"}, "not on 192.0.2.1"),
        # The reproduction: the client id alone fell back to the dev key pair.
        (
            ["--host", "0.0.0.0"],
            {"AWS_COGNITO_USER_POOL_CLIENT_ID": "web"},
            "AWS_COGNITO_USER_POOL_ID is not set",
        ),
        ([], {"AWS_COGNITO_USER_POOL_ID": "", "AWS_COGNITO_USER_POOL_CLIENT_ID": "web"}, "blank"),
    ],
)
def test_serve_refuses_to_sign_in_fail_open(args, env, said, tmp_path) -> None:
    env = {"CRUDDUR_HOME": str(tmp_path), "CONNECTION_URL": "postgresql://x@127.0.0.1:9/x", **env}
    refused = run(CRUDDUR, "serve", "--port", str(free_port()), *args, env=env)
    assert refused.returncode == 1, refused.stderr
    assert said in refused.stderr and refused.stderr.startswith("error:")
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    "setting", ["CRUDDUR_API_CONNECTION_URL", "READER_CONNECTION_URL", "CRUDDUR_LISTEN_URL"]
)
def test_serve_refuses_a_malformed_url_without_echoing_it(setting: str, tmp_path) -> None:
    # The listen URL was taken as it was: the feed cache then logged libpq's message,
    # which quotes the password, and stayed off.
    env = {
        "CRUDDUR_HOME": str(tmp_path),
        "CONNECTION_URL": "postgresql://x@127.0.0.1:9/x",
        setting: "postgresql://postgres:se%zzcretPW@127.0.0.1:5432/db",
    }
    refused = run(CRUDDUR, "serve", "--port", str(free_port()), env=env)
    assert refused.returncode == 1, refused.stderr
    assert f"error: {setting} is malformed: " in refused.stderr
    assert "zzcretPW" not in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ({"CRUDDUR_WORKERS": "abc"}, "error: CRUDDUR_WORKERS must be a whole number, not 'abc'\n"),
        # The web page's setting: `serve` sends the page, `db` never does.
        ({"CRUDDUR_API_URL": "ftp://x"}, "error: CRUDDUR_API_URL must be an http:// or https://"),
    ],
)
def test_a_bad_serving_setting_stops_serve_not_the_db_commands(
    seeded_db: str, tmp_path, setting: dict[str, str], said: str
) -> None:
    # Settings are checked by the commands that read them: `db status` never serves.
    env = {"CRUDDUR_HOME": str(tmp_path), "CONNECTION_URL": seeded_db, **setting}
    for verb in (("db", "status"), ("db", "migrations")):
        done = run(CRUDDUR, *verb, env=env)
        assert done.returncode == 0, done.stderr
    refused = run(CRUDDUR, "serve", "--port", str(free_port()), env=env)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.startswith(said), refused.stderr
    assert "Traceback" not in refused.stderr


def test_serve_on_a_database_not_made_yet_says_how_to_make_it(server_url: str, tmp_path) -> None:
    # A review: "the database does not answer yet: database … does not exist", which
    # read as a wait, where `bin/db-setup` was what it needed.
    missing = with_database(server_url, f"cruddur_never_made_{uuid.uuid4().hex[:8]}")
    env = {k: v for k, v in os.environ.items() if not k.endswith("CONNECTION_URL")}
    env.update(
        CONNECTION_URL=missing, CRUDDUR_HOME=str(tmp_path), NO_COLOR="1", PORT=str(free_port())
    )
    process = subprocess.Popen(
        [str(CRUDDUR), "serve", "--workers", "1"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    said: list[str] = []
    try:
        for line in process.stdout:  # type: ignore[union-attr]
            said.append(line)
            if line.startswith("server:"):
                break
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    output = "".join(said)
    assert "does not exist: create it with `bin/db-create`" in output, output
    assert "does not answer yet" not in output, output
