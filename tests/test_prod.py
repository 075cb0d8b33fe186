"""`prod` routing and the production confirmation: only PROD_CONNECTION_URL's database changes."""

from __future__ import annotations

import ipaddress
import os

import psycopg
import pytest
from helpers import ROOT, cli, database_exists, run, tables
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cruddur.cli.options import for_prod
from cruddur.urls import database_name


@pytest.fixture
def two_dbs(empty_db, admin, server_url, new_db_name):
    """A local and a 'production' database on the test server."""
    name = new_db_name()
    admin.execute(f'CREATE DATABASE "{name}"')
    prod = f"{server_url.replace('dbname=postgres', '')} dbname={name}"
    return {"CONNECTION_URL": empty_db, "PROD_CONNECTION_URL": prod}


def test_setup_prod_changes_only_the_production_database(two_dbs) -> None:
    result = run("db-setup", "prod", "--yes", env=two_dbs)
    assert result.returncode == 0, result.stderr
    assert "(production)" in result.stderr
    assert tables(two_dbs["PROD_CONNECTION_URL"]) == {
        "users",
        "activities",
        "idempotency_keys",
        "schema_migrations",
    }
    assert tables(two_dbs["CONNECTION_URL"]) == set()


def test_status_prod_names_the_command_that_migrates_production(two_dbs) -> None:
    # Without `prod`, the hint's bin/db-migrate (or bin/db-setup) acts on CONNECTION_URL's
    # database: pasted after `status --prod`, it changed the local one, not production.
    status = run(
        ROOT / ".venv" / "bin" / "cruddur", "db", "status", "--prod", env=two_dbs, cwd=ROOT
    )
    assert status.returncode == 0, status.stderr
    assert "schema    not loaded (run `bin/db-migrate prod`)" in status.stdout
    assert "pending (`bin/db-migrate prod` applies them)" in status.stdout
    local = run(ROOT / ".venv" / "bin" / "cruddur", "db", "status", env=two_dbs, cwd=ROOT)
    assert "(run `bin/db-migrate` or `bin/db-setup`)" in local.stdout
    assert "(`bin/db-migrate` applies them)" in local.stdout
    # A production database that is not there: its hint names the prod scripts too.
    missing = {**two_dbs, "PROD_CONNECTION_URL": two_dbs["PROD_CONNECTION_URL"] + "_gone"}
    gone = cli(ROOT / ".venv" / "bin" / "cruddur", "db", "status", "--prod", env=missing, cwd=ROOT)
    assert gone.returncode == 1
    hint = "create it with `bin/db-create prod`, or create and load it with `bin/db-setup prod`"
    assert hint in gone.stdout, gone.stdout


def test_error_hints_on_production_name_the_prod_scripts(two_dbs) -> None:
    # bin/db-seed prod on a database without the schema said "`bin/db-migrate` (or
    # `bin/db-setup`)": pasted, those migrate, or drop and rebuild, the local database.
    prod = run("db-seed", "prod", "--yes", env=two_dbs, cwd=ROOT)
    assert prod.returncode == 1
    # From another folder (the scripts run from any), the same hint as one can paste it there.
    elsewhere = run("db-seed", "prod", "--yes", env=two_dbs)
    assert f"`{ROOT}/bin/db-migrate prod` (or `{ROOT}/bin/db-setup prod`)" in elsewhere.stderr
    assert "hint: create the schema first: `bin/db-migrate prod` (or `bin/db-setup prod`)" in (
        prod.stderr
    )
    local = run("db-seed", env=two_dbs, cwd=ROOT)
    assert local.returncode == 1
    assert "hint: create the schema first: `bin/db-migrate` (or `bin/db-setup`)" in local.stderr
    assert run("db-migrate", "prod", "--yes", env=two_dbs, cwd=ROOT).returncode == 0
    kept = run("db-setup", "prod", "--if-missing", "--yes", env=two_dbs, cwd=ROOT)
    assert kept.returncode == 0, kept.stderr
    assert "(`bin/db-seed prod` adds the seed)" in kept.stderr


def test_an_unreachable_production_server_is_not_sent_to_the_local_one(two_dbs) -> None:
    # The hint said "Locally: `cruddur db status` (`cruddur db up` starts the embedded
    # server)": an operator who followed it looked at, and started, the wrong server.
    down = {**two_dbs, "PROD_CONNECTION_URL": "postgresql://postgres:pw@127.0.0.1:1/prod"}
    refused = cli(ROOT / ".venv" / "bin" / "cruddur", "db", "migrate", "--prod", env=down)
    assert refused.returncode == 1
    assert "db status --prod` says which server was tried" in refused.stderr, refused.stderr
    assert "db up" not in refused.stderr and "Locally" not in refused.stderr
    local = {**two_dbs, "CONNECTION_URL": "postgresql://postgres:pw@127.0.0.1:1/local"}
    refused = cli(ROOT / ".venv" / "bin" / "cruddur", "db", "migrate", env=local)
    assert "db up` starts the embedded server" in refused.stderr, refused.stderr


def test_a_hint_that_names_prod_already_is_left_as_it_is() -> None:
    hint = "`bin/db-migrate prod` first; `--force` (`bin/db-drop --force`)"
    assert for_prod(hint) == "`bin/db-migrate prod` first; `--force` (`bin/db-drop prod --force`)"


def test_setup_prod_refused_for_sessions_names_setup_force_not_drop(two_dbs, admin) -> None:
    # drop's hint, `bin/db-drop --force`, would drop production and set up nothing.
    with psycopg.connect(two_dbs["PROD_CONNECTION_URL"]):
        refused = run("db-setup", "prod", "--yes", env=two_dbs, cwd=ROOT)
    assert refused.returncode == 1
    assert "1 other session is connected" in refused.stderr
    assert "`bin/db-setup prod --force` disconnects them" in refused.stderr
    assert "db-drop" not in refused.stderr
    assert database_exists(admin, database_name(two_dbs["PROD_CONNECTION_URL"]))
    forced = run("db-setup", "prod", "--yes", "--force", env=two_dbs, cwd=ROOT)
    assert forced.returncode == 0, forced.stderr


def test_schema_load_and_seed_route_prod(two_dbs) -> None:
    for script in ("db-schema-load", "db-seed"):
        result = run(script, "prod", "--yes", env=two_dbs)
        assert result.returncode == 0, result.stderr
    with psycopg.connect(two_dbs["PROD_CONNECTION_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (3,)
    assert tables(two_dbs["CONNECTION_URL"]) == set()


def test_connect_routes_prod(two_dbs) -> None:
    result = run("db-connect", "prod", "--", "-tAc", "SELECT current_database()", env=two_dbs)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == database_name(two_dbs["PROD_CONNECTION_URL"])


def test_sessions_routes_prod(two_dbs) -> None:
    # Production here is a server that is not there: only the prod run can fail.
    env = {**two_dbs, "PROD_CONNECTION_URL": "postgresql://postgres@127.0.0.1:1/cruddur"}
    assert run("db-sessions", env=env).returncode == 0
    prod = run("db-sessions", "prod", env=env)
    assert prod.returncode == 1
    assert "127.0.0.1" in prod.stderr and "Connection refused" in prod.stderr


def test_kill_all_routes_prod(two_dbs) -> None:
    with (
        psycopg.connect(two_dbs["CONNECTION_URL"]) as local_conn,
        psycopg.connect(two_dbs["PROD_CONNECTION_URL"]) as prod_conn,
    ):
        result = run("db-kill-all", "prod", "--yes", env=two_dbs)
        assert result.returncode == 0, result.stderr
        assert local_conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            prod_conn.execute("SELECT 1")


def test_setup_if_missing_on_prod_asks_before_loading(two_dbs) -> None:
    refused = run("db-setup", "prod", "--if-missing", env=two_dbs)
    assert refused.returncode == 1
    assert "not confirmed" in refused.stderr
    assert tables(two_dbs["PROD_CONNECTION_URL"]) == set()


def test_setup_if_missing_on_prod_asks_before_creating(two_dbs, admin) -> None:
    # The question came after the CREATE DATABASE: a "no" left production with a new
    # empty database, and the error said "nothing done".
    gone = {**two_dbs, "PROD_CONNECTION_URL": two_dbs["PROD_CONNECTION_URL"] + "_new"}
    name = database_name(gone["PROD_CONNECTION_URL"])
    refused = run("db-setup", "prod", "--if-missing", env=gone)
    assert refused.returncode == 1
    assert f'create, migrate and seed "{name}" on PRODUCTION' in refused.stderr
    assert "not confirmed" in refused.stderr
    assert not database_exists(admin, name)
    made = run("db-setup", "prod", "--if-missing", "--yes", env=gone)
    try:
        assert made.returncode == 0, made.stderr
        assert "users" in tables(gone["PROD_CONNECTION_URL"])
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_setup_if_missing_refuses_a_partial_schema(two_dbs) -> None:
    with psycopg.connect(two_dbs["PROD_CONNECTION_URL"]) as conn:
        conn.execute("CREATE TABLE users (keep text)")
        conn.execute("INSERT INTO users VALUES ('real user')")
    result = run("db-setup", "prod", "--if-missing", "--yes", env=two_dbs)
    assert result.returncode == 1
    assert "not the schema 20261201000000_initial_schema.sql makes" in result.stderr
    with psycopg.connect(two_dbs["PROD_CONNECTION_URL"]) as conn:
        assert conn.execute("SELECT keep FROM users").fetchall() == [("real user",)]


def test_create_and_drop_route_prod(two_dbs, admin) -> None:
    prod_name = database_name(two_dbs["PROD_CONNECTION_URL"])
    local_name = database_name(two_dbs["CONNECTION_URL"])
    dropped = run("db-drop", "prod", "--yes", env=two_dbs)
    assert dropped.returncode == 0, dropped.stderr
    assert not database_exists(admin, prod_name)
    assert database_exists(admin, local_name)
    created = run("db-create", "prod", env=two_dbs)
    assert created.returncode == 0, created.stderr
    assert database_exists(admin, prod_name)


@pytest.mark.parametrize("script", ["db-drop", "db-schema-load", "db-setup", "db-kill-all"])
def test_destructive_prod_verbs_refuse_without_the_typed_name(two_dbs, admin, script) -> None:
    prod_url = two_dbs["PROD_CONNECTION_URL"]
    # Production's data and a session of its own: a verb that acted before it asked (setup
    # dropping and making the database again, kill-all disconnecting) would lose them.
    with psycopg.connect(prod_url, autocommit=True) as session:
        session.execute("CREATE TABLE keep_me (note text)")
        session.execute("INSERT INTO keep_me VALUES ('real data')")
        # No answer through the script as a user runs it; wrong answers in this process.
        for answer, runner in (("", run), ("yes\n", cli), ("cruddur\n", cli)):
            result = runner(script, "prod", env=two_dbs, stdin=answer)
            assert result.returncode == 1
            assert "not confirmed, nothing done" in result.stderr
            assert "PRODUCTION" in result.stderr
            assert "dropped" not in result.stderr and "disconnected" not in result.stderr
        assert session.execute("SELECT note FROM keep_me").fetchall() == [("real data",)]
    assert tables(prod_url) == {"keep_me"}


def test_seeding_production_asks_first(two_dbs) -> None:
    # Every test seeding production passed --yes: without its question, the sample users
    # and cruds went into production and the suite stayed green.
    prod_url = two_dbs["PROD_CONNECTION_URL"]
    assert run("db-migrate", "prod", "--yes", env=two_dbs).returncode == 0
    for answer, runner in (("", run), ("yes\n", cli)):
        result = runner("db-seed", "prod", env=two_dbs, stdin=answer)
        assert result.returncode == 1, result.stderr
        assert "not confirmed, nothing done" in result.stderr
    with psycopg.connect(prod_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_typing_the_name_confirms(two_dbs) -> None:
    prod_name = database_name(two_dbs["PROD_CONNECTION_URL"])
    result = run("db-schema-load", "prod", env=two_dbs, stdin=f"{prod_name}\n")
    assert result.returncode == 0, result.stderr
    assert tables(two_dbs["PROD_CONNECTION_URL"]) == {
        "users",
        "activities",
        "idempotency_keys",
        "schema_migrations",
    }


def test_local_verbs_do_not_ask(two_dbs) -> None:
    result = run("db-schema-load", env=two_dbs)  # no stdin, no --yes
    assert result.returncode == 0, result.stderr
    assert tables(two_dbs["CONNECTION_URL"]) == {
        "users",
        "activities",
        "idempotency_keys",
        "schema_migrations",
    }


def test_prod_without_prod_url_is_a_clear_error(empty_db) -> None:
    result = run("db-create", "prod", env={"CONNECTION_URL": empty_db})
    assert result.returncode == 1
    assert "PROD_CONNECTION_URL is not set" in result.stderr


def test_passwords_are_redacted_in_every_printed_url() -> None:
    secret = "S3cret-Pa55w0rd"
    env = {
        "CONNECTION_URL": f"postgresql://cruddurroot:{secret}@127.0.0.1:1/cruddur",
        "PROD_CONNECTION_URL": f"postgresql://cruddurroot:{secret}@127.0.0.1:1/cruddur",
    }
    for args in (
        ["db-create"],
        ["db-drop", "prod"],
        ["db-setup", "prod", "--yes"],
        ["db-sessions", "prod"],
    ):
        result = run(*args, env=env, stdin="cruddur\n")
        output = result.stdout + result.stderr
        assert secret not in output
        assert "postgresql://cruddurroot:***@127.0.0.1:1/cruddur" in output


def _spelled_otherwise(conninfo: str) -> str:
    """The same server by another name: localhost for 127.0.0.1 (and for a socket), and
    127.0.0.1 for localhost, with a trailing dot on a name."""
    params = conninfo_to_dict(conninfo)
    host = str(params.get("host") or "localhost")
    params["host"] = "localhost." if host == "127.0.0.1" else "127.0.0.1"
    return make_conninfo(**params)


@pytest.mark.parametrize("spelling", ["the same", "another"])
def test_connection_url_naming_production_asks_too(two_dbs, admin, spelling: str) -> None:
    # The original's docker-compose set CONNECTION_URL to PROD_CONNECTION_URL; a tunnel
    # may reach production as localhost where PROD_CONNECTION_URL says 127.0.0.1.
    prod = two_dbs["PROD_CONNECTION_URL"]
    local = prod if spelling == "the same" else _spelled_otherwise(prod)
    env = {"CONNECTION_URL": local, "PROD_CONNECTION_URL": prod}
    for script in ("db-drop", "db-schema-load"):
        result = run(script, env=env, stdin="")
        assert result.returncode == 1
        assert "not confirmed, nothing done" in result.stderr
        assert "production, through CONNECTION_URL" in result.stderr
    assert database_exists(admin, database_name(prod))
    assert tables(prod) == set()


def test_a_stray_prod_is_refused_with_the_command_to_run(two_dbs) -> None:
    # Only a script's first argument `prod` becomes --prod (bin/lib/command): elsewhere it
    # is refused, neither database is touched, and the error says what to run instead.
    late = run("db-schema-load", "--yes", "prod", env=two_dbs)
    assert late.returncode == 2
    assert "bin/db-schema-load prod --yes" in late.stderr
    assert "cruddur db schema-load --yes --prod" in late.stderr
    assert "unexpected extra argument" not in late.stderr
    direct = run(ROOT / ".venv" / "bin" / "cruddur", "db", "status", "prod", env=two_dbs)
    assert direct.returncode == 2
    assert "cruddur db status --prod" in direct.stderr
    assert "bin/db-status" not in direct.stderr  # no such script: only --prod is offered
    # From the checkout, as the README's commands run: what it offers pastes as it is
    # (it said `cruddur db status --prod`, and cruddur is not on PATH after bin/run).
    here = run(ROOT / ".venv" / "bin" / "cruddur", "db", "status", "prod", env=two_dbs, cwd=ROOT)
    assert "use --prod: .venv/bin/cruddur db status --prod" in here.stderr, here.stderr
    assert "Try '.venv/bin/cruddur db status --help' for help." in here.stderr
    for url in two_dbs.values():
        assert tables(url) == set()


def _with_raw_password(conninfo: str, password: str) -> str:
    """The URL of `conninfo`'s database with `password` written in as it is, not encoded."""
    from cruddur.urls import as_url

    return as_url(make_conninfo(conninfo, password="PLACEHOLDER")).replace("PLACEHOLDER", password)


def test_a_password_with_a_raw_slash_or_at_is_refused_and_never_shown(empty_db) -> None:
    # An AWS Secrets Manager password: libpq read `user:Xk9` as host and port, printed the
    # rest as the database's name and handed psql the password on its command line.
    from psycopg import sql

    from cruddur.urls import as_url

    # A role of the test's own has the password (a server that checks passwords, as the
    # embedded one does, must accept the encoded URL), and owns the database to migrate.
    role = f"cruddur_t_raw_{os.getpid()}"
    name = sql.Identifier(role)
    with psycopg.connect(empty_db, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(name))
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(database_name(empty_db)), name
            )
        )
    try:
        for password, parts in (("Xk9/Qm2@Zp7", ("Xk9", "Qm2", "Zp7")), ("p@ss", ("ss@", "p@"))):
            with psycopg.connect(empty_db, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(name, sql.Literal(password))
                )
            own = make_conninfo(empty_db, user=role)
            url = _with_raw_password(own, password)
            for args in (["db", "status"], ["db", "connect"], ["db", "migrate"], ["serve"]):
                result = run(ROOT / ".venv" / "bin" / "cruddur", *args, env={"CONNECTION_URL": url})
                output = result.stdout + result.stderr
                assert result.returncode == 1, (args, output)
                assert "error: CONNECTION_URL is malformed" in output
                assert '"/" as %2F, "@" as %40' in output
                for part in parts:
                    assert part not in output, (args, part, output)
            # Percent-encoded, the same password works.
            encoded = as_url(make_conninfo(own, password=password))
            assert "%2F" in encoded or "%40" in encoded
            result = run("db-migrate", env={"CONNECTION_URL": encoded})
            assert result.returncode == 0, result.stderr
            assert tables(empty_db) == {
                "users",
                "activities",
                "idempotency_keys",
                "schema_migrations",
            }
            for part in parts:
                assert part not in result.stdout + result.stderr
    finally:
        with psycopg.connect(empty_db, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(name))
            admin.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(
                    sql.Identifier(database_name(empty_db))
                )
            )
            admin.execute(sql.SQL("DROP ROLE {}").format(name))


@pytest.mark.parametrize(
    "setting", ["PROD_CONNECTION_URL", "MIGRATION_CONNECTION_URL", "READER_CONNECTION_URL"]
)
def test_a_malformed_url_setting_is_named_with_its_reason(two_dbs, setting: str) -> None:
    env = {
        "CONNECTION_URL": two_dbs["CONNECTION_URL"],
        setting: "postgresql://u:s3cret@h/x?sslmod=require",
    }
    verb = "migrate" if setting == "MIGRATION_CONNECTION_URL" else "status"
    result = run(ROOT / ".venv" / "bin" / "cruddur", "db", verb, env=env)
    assert result.returncode == 1
    assert f'error: {setting} is malformed: unknown connection parameter "sslmod"' in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert tables(two_dbs["CONNECTION_URL"]) == set()


def _reached_otherwise(prod: str) -> dict[str, dict[str, str]]:
    """Settings that reach `prod`'s server by its address, where CONNECTION_URL's host
    says another, or says nothing and PG* variables do."""
    params = conninfo_to_dict(prod)
    address = str(params.get("host") or "")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        pytest.skip(f"the test server is reached as {address!r}, not by an IP address")
    local = {k: v for k, v in params.items() if k not in ("host", "password")}
    mapped = f"::ffff:{ip}" if ip.version == 4 else str(ip)
    rds = "cruddur.abc123.ca-central-1.rds.amazonaws.com"
    return {
        "hostaddr": {
            "CONNECTION_URL": make_conninfo(prod, host="db.internal.invalid", hostaddr=str(ip))
        },
        "mapped": {"CONNECTION_URL": make_conninfo(prod, host=mapped)},
        "PGHOSTADDR": {
            "CONNECTION_URL": make_conninfo(prod, host="db.internal.invalid"),
            "PGHOSTADDR": str(ip),
        },
        "PGHOST of RDS": {
            "CONNECTION_URL": make_conninfo("", **local),
            "PGHOST": rds,
            "PGHOSTADDR": str(ip),
            "PROD_CONNECTION_URL": "",
        },
    }


@pytest.mark.parametrize("how", ["hostaddr", "mapped", "PGHOSTADDR", "PGHOST of RDS"])
def test_connection_url_reaching_production_by_its_address_asks(two_dbs, how: str) -> None:
    prod = two_dbs["PROD_CONNECTION_URL"]
    env = {"PROD_CONNECTION_URL": prod, **_reached_otherwise(prod)[how]}
    with psycopg.connect(prod) as prod_conn:
        result = run("db-kill-all", env=env, stdin="")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "not confirmed, nothing done" in result.stderr
        assert "production, through CONNECTION_URL" in result.stderr
        assert prod_conn.execute("SELECT 1").fetchone() == (1,)


def test_ctrl_c_at_the_production_question_is_an_interrupt(two_dbs) -> None:
    # A review: it ended "not confirmed, nothing done" with status 1; a Ctrl-C anywhere
    # else is 130 and says what was kept.
    import signal
    import subprocess
    import time

    from helpers import CRUDDUR

    env = {**os.environ, **two_dbs, "NO_COLOR": "1"}
    process = subprocess.Popen(
        [CRUDDUR, "db", "drop", "--prod"], env=env, stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        said = ""
        while "Type the database name" not in said:
            chunk = process.stderr.read(1)
            assert chunk, said  # it ended before asking
            said += chunk
        time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        rest = process.communicate(timeout=30)[1]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, said + rest
    assert "interrupted" in rest and "not confirmed" not in rest, rest
    assert "Traceback" not in rest and "Aborted!" not in rest
    assert database_exists_url(two_dbs["PROD_CONNECTION_URL"])


def database_exists_url(url: str) -> bool:
    with psycopg.connect(url):
        return True
