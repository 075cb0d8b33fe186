"""Least privilege: the API and the sign-up Lambda log in as roles of their own.

The API's role reads and writes rows and nothing more: no superuser, no DDL, nothing
`RESET ROLE` or `SET ROLE` can reach, no `COPY … TO PROGRAM`. The Lambda's may only
insert and read users. The owner keeps everything else.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from helpers import ROOT, cli, run
from psycopg import errors, sql

from cruddur.db import Db
from cruddur.errors import Problem
from cruddur.ops import loading, roles
from cruddur.ops.migrations.files import package_dir
from cruddur.urls import parse, with_user

DENIED = errors.InsufficientPrivilege


def cruddur(*args: str, env: dict[str, str], stdin: str | None = None):
    return run(ROOT / ".venv" / "bin" / "cruddur", *args, env=env, stdin=stdin)


def here(*args: str, env: dict[str, str], stdin: str | None = None):
    """cruddur(…) in this process (helpers.cli), where no secret could leave by a log."""
    return cli(ROOT / ".venv" / "bin" / "cruddur", *args, env=env, stdin=stdin)


def _refused(conn: psycopg.Connection, statement: str) -> None:
    with pytest.raises(DENIED):
        conn.execute(statement)


def test_the_apis_sessions_are_not_superusers_and_cannot_change_the_schema(app, seeded_db) -> None:
    database = app.extensions["cruddur.db"].get()
    owner = parse(seeded_db)["user"]
    facts = database.query_rows(
        "SELECT current_user, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
        "WHERE rolname = current_user"
    )[0]
    assert facts[0] != owner
    assert facts[1:] == (False, False, False)
    with database.connection() as conn:  # the API's own pool: autocommit
        _refused(conn, "DROP TABLE activities")
        _refused(conn, "COPY (SELECT 1) TO PROGRAM 'id'")
        _refused(conn, "CREATE TABLE public.planted (x int)")
        _refused(conn, "CREATE TEMP TABLE planted (x int)")
        _refused(conn, "ALTER TABLE users ADD COLUMN planted int")
        _refused(conn, "DELETE FROM activities")
        _refused(conn, "TRUNCATE users")
        _refused(conn, "CREATE ROLE planted")
        _refused(conn, "DELETE FROM schema_migrations")  # the migrations' own bookkeeping
        _refused(
            conn,
            "INSERT INTO schema_migrations (version, name, checksum) VALUES "
            "('29990101000000', 'planted', 'x')",
        )
        conn.execute("RESET ROLE")  # nothing to go back to: it logged in as itself
        _refused(conn, "DROP TABLE activities")
        _refused(conn, sql.SQL("SET ROLE {}").format(sql.Identifier(owner)).as_string(conn))
        _refused(conn, f"SET SESSION AUTHORIZATION {owner}")
    assert database.query_value("SELECT count(*) FROM users") == 3  # it reads, though


def test_the_api_still_writes_through_its_role(api, mint, db) -> None:
    created = api.post(
        "/api/activities",
        json={"message": "least privilege", "ttl": "1-day"},
        headers={"Authorization": f"Bearer {mint()}"},
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    reply = api.post(
        f"/api/activities/{created.get_json()['uuid']}/reply",
        json={"message": "and replies"},
        headers={"Authorization": f"Bearer {mint()}"},
    )
    assert reply.status_code == 201
    assert db.query_value("SELECT count(*) FROM activities WHERE message = 'least privilege'") == 1


def test_the_lambdas_role_may_only_insert_and_read_users(lambda_url) -> None:
    with psycopg.connect(lambda_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (display_name, handle, email, cognito_user_id) "
            "VALUES ('New', 'newuser', 'n@x.example', 'sub-new')"
        )
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (4,)
        _refused(conn, "UPDATE users SET email = 'e@x.example'")
        _refused(conn, "DELETE FROM users")
        _refused(conn, "SELECT count(*) FROM activities")
        _refused(conn, "DROP TABLE users")
        _refused(conn, "COPY (SELECT 1) TO PROGRAM 'id'")


def test_the_apis_role_writes_only_what_the_api_writes(api_url) -> None:
    # It could UPDATE users (a token's sub moved to another account), INSERT users,
    # read their emails, and rewrite any crud's text, author or counts.
    with psycopg.connect(api_url, autocommit=True) as conn:
        _refused(conn, "UPDATE users SET cognito_user_id = 'attacker' WHERE handle = 'bayko'")
        _refused(
            conn,
            "INSERT INTO users (display_name, handle, email, cognito_user_id) "
            "VALUES ('X', 'planted', 'p@x.example', 'sub-planted')",
        )
        _refused(conn, "SELECT email FROM users")
        _refused(conn, "SELECT * FROM users")
        _refused(conn, "UPDATE activities SET message = 'rewritten'")
        _refused(conn, "UPDATE activities SET likes_count = 1000")
        _refused(
            conn,
            "INSERT INTO activities (user_uuid, message, likes_count) "
            "SELECT uuid, 'x', 1000 FROM users LIMIT 1",
        )
        # What it does write and read, it may.
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (3,)
        conn.execute("UPDATE activities SET replies_count = replies_count WHERE false")
        conn.execute(
            "INSERT INTO activities (user_uuid, message) SELECT uuid, 'x' FROM users LIMIT 1"
        )


def test_tables_made_later_by_the_owner_are_given_to_no_one(
    seeded_db, app_roles, api_url, lambda_url
) -> None:
    # Until grant.sql names them: each role gets what its SQL uses, nothing by default
    # (and the default privileges earlier versions gave the API are taken back).
    (api, _), (lambda_, _) = app_roles["api"], app_roles["lambda"]
    with psycopg.connect(seeded_db, autocommit=True) as owner:  # a migration, say
        owner.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}"
            ).format(sql.Identifier(api))
        )
    with Db(seeded_db) as owner:
        roles.grant(owner, api=api, lambda_=lambda_)
    with psycopg.connect(seeded_db, autocommit=True) as owner:
        owner.execute("CREATE TABLE public.likes (id serial PRIMARY KEY, note text)")
    for url in (api_url, lambda_url):
        with psycopg.connect(url, autocommit=True) as conn:
            _refused(conn, "SELECT count(*) FROM likes")
            _refused(conn, "INSERT INTO likes (note) VALUES ('x')")


def test_grant_sql_itself_refuses_the_roles_temporary_tables(empty_db, app_roles) -> None:
    # The suite's seeded copies are given grant.sql's database-level REVOKE by conftest (a
    # template's copy does not carry it), so only a database no fixture touched shows
    # whether grant.sql does it: with its REVOKE TEMPORARY gone, every test still passed.
    (api, api_password), (lambda_, lambda_password) = app_roles["api"], app_roles["lambda"]
    with Db(empty_db) as owner:
        loading.load(owner, loading.SCHEMA)
        roles.grant(owner, api=api, lambda_=lambda_)
    for role, password in ((api, api_password), (lambda_, lambda_password)):
        with psycopg.connect(with_user(empty_db, role, password), autocommit=True) as conn:
            _refused(conn, "CREATE TEMP TABLE planted (x int)")
            _refused(conn, "CREATE TABLE public.planted (x int)")


def test_grants_come_back_after_the_schema_is_loaded_again(seeded_db, app_roles, lambda_url):
    (api, _), (lambda_, _) = app_roles["api"], app_roles["lambda"]
    with Db(seeded_db) as owner:
        loading.load(owner, loading.SCHEMA)  # drops and makes the tables again
        with psycopg.connect(lambda_url, autocommit=True) as conn:
            _refused(conn, "SELECT count(*) FROM users")  # the old grant went with the table
        roles.grant(owner, api=api, lambda_=lambda_)
        roles.grant(owner, api=api, lambda_=lambda_)  # twice: no change, no error
    with psycopg.connect(lambda_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_grants_given_at_the_same_moment_all_succeed(seeded_db, app_roles) -> None:
    # Every migrate grants again (two deploys at once, or compose's migrate job beside
    # bin/run's setup): a GRANT rewriting the catalog row another transaction was
    # rewriting failed with "tuple concurrently updated", 1 of 20 migrates in 4 at once.
    (api, _), (lambda_, _) = app_roles["api"], app_roles["lambda"]
    failures: list[BaseException] = []

    def grant_a_few_times() -> None:
        with Db(seeded_db) as owner:
            for _ in range(5):
                try:
                    roles.grant(owner, api=api, lambda_=lambda_)
                except Exception as exc:  # counted, and shown below
                    failures.append(exc)

    threads = [threading.Thread(target=grant_a_few_times) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_grants_are_given_again_only_where_they_were_given(
    seeded_db, empty_db, role_names, tmp_path
):
    api, lambda_ = role_names
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", str(tmp_path / "e")]
    assert here("db", "roles", *options, env=env).returncode == 0
    with Db(seeded_db) as given, Db(empty_db) as other:
        assert roles.given_here(given) == {"api": [api], "lambda": [lambda_]}
        # A migrate there leaves it alone.
        assert roles.given_here(other) == {"api": [], "lambda": []}


def test_roles_of_any_name_get_their_grants_back_after_a_schema_load(
    seeded_db, role_names, admin, tmp_path
) -> None:
    api, lambda_ = role_names
    env_file = tmp_path / "roles.env"
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", str(env_file)]
    assert here("db", "roles", *options, env=env).returncode == 0
    urls = _env_values(env_file)
    # Someone else's role allowed to connect (an analyst's, say) is not an application
    # role: a schema load must not give it the Lambda's grants.
    analyst = f"{api}_analyst"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'x'").format(sql.Identifier(analyst)))
    try:
        with psycopg.connect(seeded_db, autocommit=True) as owner:
            database = owner.execute("SELECT current_database()").fetchone()[0]
            owner.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(database), sql.Identifier(analyst)
                )
            )
        loaded = here("db", "schema-load", "--yes", env=env)
        assert loaded.returncode == 0, loaded.stderr
        assert f"privileges granted again to {api} and {lambda_}" in loaded.stderr
        with psycopg.connect(urls["CRUDDUR_LAMBDA_CONNECTION_URL"], autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
        with psycopg.connect(urls["CRUDDUR_API_CONNECTION_URL"], autocommit=True) as conn:
            _refused(conn, "DELETE FROM schema_migrations")  # the owner's bookkeeping
            _refused(conn, "INSERT INTO schema_migrations (version) VALUES ('1')")
        with psycopg.connect(seeded_db, autocommit=True) as owner:
            held = owner.execute(
                "SELECT has_table_privilege(%s, 'users', 'INSERT')", [analyst]
            ).fetchone()
            assert held == (False,)
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(analyst)))
    finally:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(analyst)))


@pytest.fixture
def role_names(admin, seeded_db) -> Iterator[tuple[str, str]]:
    """Role names of the test's own; dropped afterwards, with what they hold."""
    suffix = uuid.uuid4().hex[:8]
    names = (f"cruddur_t_api_{suffix}", f"cruddur_t_lambda_{suffix}")
    yield names
    _drop_roles(admin, seeded_db, *names)


def _drop_roles(admin: psycopg.Connection, url: str, *names: str) -> None:
    """The roles, and what they hold in the database at `url` (granted there only)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    for name in names:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@contextmanager
def _roles_given(url: str, admin: psycopg.Connection, tmp_path) -> Iterator[tuple[str, dict]]:
    """Roles of names of their own given the database at `url` by `db roles`: the API
    role's name and the environment the CLI runs in; dropped after."""
    api, lambda_ = (f"cruddur_t_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("api", "lambda"))
    env = {"CONNECTION_URL": url, "CRUDDUR_HOME": str(tmp_path / "home")}
    options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", str(tmp_path / "r.env")]
    try:
        assert here("db", "roles", *options, env=env).returncode == 0
        yield api, env
    finally:
        _drop_roles(admin, url, api, lambda_)


def _env_values(path) -> dict[str, str]:
    return _env_values_of(path.read_text())


def _env_values_of(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {k: v.strip("'") for k, _, v in (line.partition("=") for line in lines)}


def _who(url: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT current_user").fetchone()[0]


def test_other_roles_written_to_the_same_file_keep_the_first_roles_urls(
    admin, seeded_db, role_names, tmp_path
) -> None:
    # A review: a second run naming other roles overwrote the file's two URLs, and the
    # first roles' passwords were known nowhere.
    first_api, first_lambda = role_names
    second = (f"{first_api}_b", f"{first_lambda}_b")
    env_file = tmp_path / "roles.env"
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    try:
        for api, lambda_ in (role_names, second):
            options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", str(env_file)]
            made = cruddur("db", "roles", *options, env=env)
            assert made.returncode == 0, made.stderr
        assert "named another role: kept, commented out" in made.stderr
        assert _who(_env_values(env_file)["CRUDDUR_API_CONNECTION_URL"]) == second[0]
        kept = [
            line.removeprefix("# replaced by `db roles`: ")
            for line in env_file.read_text().splitlines()
            if line.startswith("# replaced")
        ]
        assert len(kept) == 2
        first_url = _env_values_of("\n".join(kept))["CRUDDUR_API_CONNECTION_URL"]
        assert _who(first_url) == first_api  # its password still written down, and working
    finally:
        _drop_roles(admin, seeded_db, *second)


def test_db_roles_makes_both_roles_and_hides_their_passwords(
    seeded_db, role_names, tmp_path, passwords_checked
) -> None:
    api, lambda_ = role_names
    env_file = tmp_path / "roles.env"
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", str(env_file)]
    made = cruddur("db", "roles", *options, env=env)
    assert made.returncode == 0, made.stderr
    assert f'CRUDDUR_API_CONNECTION_URL="postgresql://{api}:***@' in made.stdout
    assert f'CRUDDUR_LAMBDA_CONNECTION_URL="postgresql://{lambda_}:***@' in made.stdout
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    urls = _env_values(env_file)
    for url in urls.values():
        password = parse(url)["password"]
        assert password not in made.stdout + made.stderr
    assert _who(urls["CRUDDUR_API_CONNECTION_URL"]) == api
    assert _who(urls["CRUDDUR_LAMBDA_CONNECTION_URL"]) == lambda_

    again = cruddur("db", "roles", *options, env=env)
    assert again.returncode == 0, again.stderr
    assert "password unchanged" in again.stderr
    assert _env_values(env_file) == urls  # still the passwords that work
    assert _who(urls["CRUDDUR_API_CONNECTION_URL"]) == api

    rotated = cruddur("db", "roles", "--rotate", *options, env=env)
    assert rotated.returncode == 0, rotated.stderr
    new_urls = _env_values(env_file)
    assert new_urls != urls
    assert _who(new_urls["CRUDDUR_API_CONNECTION_URL"]) == api
    if passwords_checked:  # the old password is refused where passwords are checked
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            _who(urls["CRUDDUR_API_CONNECTION_URL"])


def test_db_roles_on_a_second_database_gives_its_url_or_says_it_has_none(
    seeded_db, empty_db, role_names, tmp_path
) -> None:
    # A review: the roles there already, the line printed for the second database stood
    # for a URL whose password was "unknown" (hidden as ***), and the file kept the first
    # database's URL: an API started from it served the other database.
    api, lambda_ = role_names
    env_file = tmp_path / "roles.env"
    options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", str(env_file)]
    home = {"CRUDDUR_HOME": str(tmp_path / "home")}
    made = cruddur("db", "roles", *options, env={**home, "CONNECTION_URL": seeded_db})
    assert made.returncode == 0, made.stderr
    try:
        _on_a_second_database(empty_db, options, home, env_file, api, lambda_, tmp_path)
    finally:  # what they were granted there, for role_names to drop them
        with psycopg.connect(empty_db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}, {}").format(
                sql.Identifier(api), sql.Identifier(lambda_)))  # fmt: skip


def _on_a_second_database(empty_db, options, home, env_file, api, lambda_, tmp_path) -> None:
    second = cruddur("db", "roles", *options, env={**home, "CONNECTION_URL": empty_db})
    assert second.returncode == 0, second.stderr
    urls = _env_values(env_file)
    for setting, role in (("CRUDDUR_API_CONNECTION_URL", api), ("CRUDDUR_LAMBDA_CONNECTION_URL",
                                                                   lambda_)):  # fmt: skip
        assert parse(urls[setting])["dbname"] == parse(empty_db)["dbname"]
        with psycopg.connect(urls[setting]) as conn:  # its password works there
            assert conn.execute("SELECT current_user").fetchone()[0] == role
        assert f'{setting}="postgresql://{role}:***@' in second.stdout
        assert "unknown" not in second.stdout + second.stderr
    # Another file, which never had them: no URL to give, and it says so.
    elsewhere = [*options[:-1], str(tmp_path / "other.env")]
    unknown = cruddur("db", "roles", *elsewhere, env={**home, "CONNECTION_URL": empty_db})
    assert unknown.returncode == 0, unknown.stderr
    assert "CONNECTION_URL=" not in unknown.stdout
    assert "its password not known here" in unknown.stderr and "--rotate" in unknown.stderr
    assert "a role is the server's: every database whose API or Lambda" in unknown.stderr


def test_an_env_file_that_cannot_be_written_changes_no_password(
    seeded_db, role_names, tmp_path
) -> None:
    # Written only after the roles changed, a failed write lost the new passwords: the
    # API's role kept one nobody knew.
    api, lambda_ = role_names
    env_file = tmp_path / "roles.env"
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    options = ["--api-role", api, "--lambda-role", lambda_]
    made = here("db", "roles", *options, "--env-file", str(env_file), env=env)
    assert made.returncode == 0, made.stderr
    urls = _env_values(env_file)
    blocked = env_file / "roles.env"  # its folder would be a file
    for args in (("--rotate",), ()):
        failed = here("db", "roles", *args, *options, "--env-file", str(blocked), env=env)
        assert failed.returncode == 1
        assert "should be a folder" in failed.stderr and "granted" not in failed.stderr
        assert _who(urls["CRUDDUR_API_CONNECTION_URL"]) == api  # the old password works


def test_a_run_that_writes_no_url_leaves_the_env_file_as_it_was(
    seeded_db, role_names, tmp_path
) -> None:
    # A review: the check that the file could be written, before any role changed,
    # rewrote it: mode 0600, CRLF made LF, a new inode (/etc/passwd as root, say).
    api, lambda_ = role_names
    env = {"PROD_CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    options = ["--prod", "--yes", "--api-role", api, "--lambda-role", lambda_]
    made = here("db", "roles", *options, "--env-file", str(tmp_path / "roles.env"), env=env)
    assert made.returncode == 0, made.stderr
    shared = tmp_path / "shared.conf"
    shared.write_bytes(b"FOO=1\r\nBAR=2")
    shared.chmod(0o644)
    before = shared.stat()
    again = here("db", "roles", *options, "--env-file", str(shared), env=env)
    assert again.returncode == 0, again.stderr
    assert "its password not known here" in again.stderr
    after = shared.stat()
    assert shared.read_bytes() == b"FOO=1\r\nBAR=2"
    assert (stat.S_IMODE(after.st_mode), after.st_ino) == (0o644, before.st_ino)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roles.env", "shared.conf"]  # no partial


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="root without DAC override"
)
def test_a_read_only_env_file_is_written_as_its_write_would(
    seeded_db, role_names, tmp_path
) -> None:
    # A review: the check before the roles change opened the file for writing, and
    # refused one of mode 0400 that the write (a new file renamed over it) handles.
    api, lambda_ = role_names
    env_file = tmp_path / "roles.env"
    env_file.write_text("NOTE=1\n")
    env_file.chmod(0o400)
    env = {**os.environ, "PROD_CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "h")}
    env.pop("CONNECTION_URL", None)
    made = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
         str(ROOT / ".venv/bin/cruddur"), "db", "roles", "--prod", "--yes",
         "--api-role", api, "--lambda-role", lambda_, "--env-file", str(env_file)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert set(_env_values(env_file)) >= {"NOTE", "CRUDDUR_API_CONNECTION_URL"}


def test_an_env_file_that_is_a_link_or_a_device_is_refused_not_to_be_removed(
    seeded_db, role_names, tmp_path
) -> None:
    # --env-file /dev/stdout said "is a symbolic link …; remove it", /dev/null "is not a
    # regular file: remove it": advice to remove the machine's devices.
    api, lambda_ = role_names
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    for path in (str(link), "/dev/null"):
        options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", path]
        refused = here("db", "roles", *options, env=env)
        assert refused.returncode == 2
        assert f"{path} is a link, a device or a pipe: give the path of a file" in refused.stderr
        assert "remove it" not in refused.stderr
    assert link.is_symlink()
    # An empty value (click's "."): a folder, not a link or a device.
    options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", ""]
    refused = here("db", "roles", *options, env=env)
    assert refused.returncode == 2
    assert ". is a folder: give the path of a file" in refused.stderr, refused.stderr


def test_db_roles_on_production_asks_first(seeded_db, role_names, admin, tmp_path) -> None:
    api, lambda_ = role_names
    env = {"PROD_CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    options = ["--prod", "--api-role", api, "--lambda-role", lambda_]
    refused = cruddur("db", "roles", *options, env=env)
    assert refused.returncode == 1
    assert admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [api]).fetchone() is None
    name = parse(seeded_db)["dbname"]
    confirmed = cruddur("db", "roles", *options, env=env, stdin=f"{name}\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert (tmp_path / "home" / "db-roles-prod.env").is_file()
    assert admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [api]).fetchone()


def test_a_role_with_powers_is_not_taken_for_an_application_role(admin, server_url) -> None:
    name = f"cruddur_t_powerful_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(name)))
    try:
        with Db(server_url) as server, pytest.raises(roles.UnsafeRole, match="CREATEDB"):
            roles.ensure(server, name)
    finally:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_role_granted_a_server_setting_is_not_taken_for_an_application_role(
    admin, server_url
) -> None:
    # A review: a role granted SET on session_replication_role (PostgreSQL 15's grants on
    # settings) was taken: SQL reaching the API could then skip foreign keys and triggers.
    name = f"cruddur_t_setting_{uuid.uuid4().hex[:8]}"
    role = sql.Identifier(name)
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
    admin.execute(sql.SQL("GRANT SET ON PARAMETER session_replication_role TO {}").format(role))
    try:
        said = "a grant on the setting session_replication_role"
        with Db(server_url) as server, pytest.raises(roles.UnsafeRole, match=said):
            roles.ensure(server, name)
        admin.execute(
            sql.SQL("REVOKE SET ON PARAMETER session_replication_role FROM {}").format(role)
        )
        # Granted to PUBLIC, every role has it: refused too (a review found it taken).
        # In a transaction rolled back, unseen by the other tests' roles on this server.
        with psycopg.connect(server_url) as conn:
            conn.execute("GRANT SET ON PARAMETER session_replication_role TO PUBLIC")
            said = "session_replication_role \\(to PUBLIC\\)"
            with pytest.raises(roles.UnsafeRole, match=said):
                roles._check_powers(conn, name)
            conn.rollback()
    finally:
        admin.execute(
            sql.SQL("REVOKE SET ON PARAMETER session_replication_role FROM {}").format(role)
        )
        admin.execute(sql.SQL("DROP ROLE {}").format(role))


def _stored_password(admin: psycopg.Connection, role: str) -> str:
    return admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role]).fetchone()[
        0
    ]


def _rotated_as_api_role(role: str, database_url: str, tmp_path):
    """`db roles --rotate --api-role ROLE` on the database, its URLs to tmp_path/roles.env."""
    env = {"CONNECTION_URL": database_url, "CRUDDUR_HOME": str(tmp_path / "home")}
    options = ["--api-role", role, "--env-file", str(tmp_path / "roles.env")]
    return here("db", "roles", "--rotate", *options, env=env)


def test_a_role_with_powers_keeps_its_password_when_refused(admin, seeded_db, tmp_path) -> None:
    # --api-role naming an admin role (the master user, say) with --rotate: its password
    # was changed, to one written nowhere, and only then refused ("unexpected UnsafeRole").
    name = f"cruddur_t_admin_{uuid.uuid4().hex[:8]}"
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD 'kept'").format(sql.Identifier(name))
    )
    before = _stored_password(admin, name)
    try:
        refused = _rotated_as_api_role(name, seeded_db, tmp_path)
        assert refused.returncode == 1
        assert f'error: role "{name}" exists with CREATEDB' in refused.stderr
        assert "unexpected" not in refused.stderr
        assert _stored_password(admin, name) == before
    finally:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@contextmanager
def _owner_of_activities(admin: psycopg.Connection, database_url: str) -> Iterator[str]:
    """A login role (password 'kept') that owns `activities` in the database; given back
    to the URL's user, and the role dropped, after."""
    name = f"cruddur_t_owner_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'kept'").format(sql.Identifier(name)))
    owner = sql.SQL("ALTER TABLE activities OWNER TO {}")
    with psycopg.connect(database_url, autocommit=True) as there:
        first = there.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'activities'")
        was = first.fetchone()[0]
        there.execute(owner.format(sql.Identifier(name)))
        try:
            yield name
        finally:
            there.execute(owner.format(sql.Identifier(was)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_role_that_owns_a_table_is_not_taken_for_an_application_role(
    admin, seeded_db, tmp_path
) -> None:
    # An RDS app user that owns the database's tables, named as --api-role: its grants
    # were "granted" and it could still drop the tables.
    with _owner_of_activities(admin, seeded_db) as name:
        before = _stored_password(admin, name)
        refused = _rotated_as_api_role(name, seeded_db, tmp_path)
        assert refused.returncode == 1
        assert f'error: role "{name}" owns the table activities in "' in refused.stderr
        assert "unexpected" not in refused.stderr
        assert _stored_password(admin, name) == before  # its password kept
        written = tmp_path / "roles.env"
        assert not written.exists() or name not in written.read_text()


def test_a_role_that_may_create_in_public_is_not_taken_for_an_application_role(
    admin, seeded_db
) -> None:
    name = f"cruddur_t_creator_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        with psycopg.connect(seeded_db, autocommit=True) as there:
            grant = sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(name))
            there.execute(grant)
        with Db(seeded_db) as database, pytest.raises(roles.UnsafeRole, match="may create in"):
            roles.check_not_owner(database, name)
        with Db(seeded_db) as database:  # the usual roles pass
            roles.check_not_owner(database, roles.API_ROLE)
            roles.check_not_owner(database, "no_such_role_here")
    finally:
        with psycopg.connect(seeded_db, autocommit=True) as there:
            there.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.mark.parametrize(
    ("made", "said"),
    [
        (
            "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';"
            "ALTER FUNCTION public.f() OWNER TO {role}",
            "owns the function f()",
        ),
        (
            "CREATE TYPE public.mood AS ENUM ('ok'); ALTER TYPE public.mood OWNER TO {role}",
            "owns the type mood",
        ),
        (
            "CREATE SCHEMA IF NOT EXISTS elsewhere; CREATE TABLE elsewhere.t (x int);"
            "ALTER TABLE elsewhere.t OWNER TO {role}",
            "owns the table elsewhere.t",
        ),
        (
            "SELECT lo_create(424242); ALTER LARGE OBJECT 424242 OWNER TO {role}",
            "owns the large object 424242",
        ),
    ],
    ids=["function", "type", "table elsewhere", "large object"],
)
def test_a_role_that_owns_anything_here_is_not_taken_for_an_application_role(
    admin, seeded_db, made: str, said: str
) -> None:
    # A review: only tables, sequences and views in public were looked at; the owner of
    # a function could drop it, or make it SECURITY DEFINER, as an "application role".
    name = f"cruddur_t_owner_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        with psycopg.connect(seeded_db, autocommit=True) as there:
            there.execute(sql.SQL(made).format(role=sql.Identifier(name)))
        with Db(seeded_db) as database, pytest.raises(roles.UnsafeRole, match=said):
            roles.check_not_owner(database, name)
    finally:
        with psycopg.connect(seeded_db, autocommit=True) as there:
            there.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            there.execute("DROP SCHEMA IF EXISTS elsewhere CASCADE")
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.mark.parametrize(
    ("grant", "said"),
    [
        ("GRANT TEMPORARY ON DATABASE {database} TO {role}", "may create temporary tables"),
        ("CREATE SCHEMA elsewhere; GRANT CREATE ON SCHEMA elsewhere TO {role}",
         "may create in the schema elsewhere"),
        ("CREATE SCHEMA AUTHORIZATION {role}", "owns the schema"),
        # Granted to PUBLIC, which every role is in (only PUBLIC's create in public, which
        # grant.sql takes back, does not count).
        ("CREATE SCHEMA elsewhere; GRANT CREATE ON SCHEMA elsewhere TO PUBLIC",
         "may create in the schema elsewhere"),
        ("GRANT CREATE ON DATABASE {database} TO PUBLIC", "may create schemas"),
    ],
)  # fmt: skip
def test_a_role_that_may_make_tables_anywhere_in_the_database_is_refused(
    admin, seeded_db, grant: str, said: str
) -> None:
    # Only public was looked at: a role given TEMPORARY on the database, or CREATE in
    # another schema, was taken, and could still make tables of its own there.
    name = f"cruddur_t_maker_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    database = sql.Identifier(parse(seeded_db)["dbname"])
    try:
        with psycopg.connect(seeded_db, autocommit=True) as there:
            for statement in grant.split("; "):
                there.execute(
                    sql.SQL(statement).format(database=database, role=sql.Identifier(name))
                )
        with Db(seeded_db) as db, pytest.raises(roles.UnsafeRole, match=said):
            roles.check_not_owner(db, name)
    finally:
        with psycopg.connect(seeded_db, autocommit=True) as there:
            there.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            there.execute("DROP SCHEMA IF EXISTS elsewhere")
            there.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(database))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_passwords_reach_the_server_only_hashed(admin, server_url) -> None:
    name = f"cruddur_t_hashed_{uuid.uuid4().hex[:8]}"
    try:
        with Db(server_url) as server:
            ensured = roles.ensure(server, name)
        stored = admin.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", [name]
        ).fetchone()[0]
        assert stored.startswith("SCRAM-SHA-256$") and ensured.password not in stored
    finally:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_one_name_for_both_roles_is_refused_before_anything_changes(admin, seeded_db, tmp_path):
    # It printed "roles cruddur_lambda and cruddur_lambda": the Lambda's role then held
    # the API's grants (INSERT and UPDATE on activities, UPDATE on users).
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    grants = "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = %s"
    before = admin.execute(grants, [roles.LAMBDA_ROLE]).fetchone()
    refused = cruddur("db", "roles", "--api-role", roles.LAMBDA_ROLE, "--yes", env=env)
    assert refused.returncode == 2, refused.stderr
    assert "need two roles, not one" in " ".join(refused.stderr.split())
    assert admin.execute(grants, [roles.LAMBDA_ROLE]).fetchone() == before
    assert not (tmp_path / "home" / "db-roles.env").exists()


def test_a_role_name_longer_than_postgresql_keeps_is_refused(admin, seeded_db, tmp_path) -> None:
    # PostgreSQL cuts a role's name to 63 bytes: the URL written for the long name would
    # name a role that does not exist, and two long names would be one role.
    long_name = f"cruddur_t_{uuid.uuid4().hex[:8]}_" + "r" * 45  # 64 bytes
    cut, other = long_name[:63], "é" * 32  # what PostgreSQL would make of each: cut
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    exists = "SELECT 1 FROM pg_roles WHERE rolname = %s"
    try:
        for option in ("--api-role", "--lambda-role"):
            refused = here("db", "roles", option, long_name, "--yes", env=env)
            assert refused.returncode == 2, refused.stderr
            assert f"Invalid value for '{option}': the role name {long_name!r} is 64 bytes" in (
                " ".join(refused.stderr.split())
            )
        with Db(seeded_db) as server, pytest.raises(Problem, match="at most 63 bytes"):
            roles.ensure(server, other)
        assert admin.execute(exists, [cut]).fetchone() is None
        assert admin.execute(exists, [other[:31]]).fetchone() is None
    finally:  # were they made after all: dropped, with what they were given
        with psycopg.connect(seeded_db, autocommit=True) as conn:
            for name in (cut, other[:31]):
                if conn.execute(exists, [name]).fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    assert roles.role_name_problem("é" * 31 + "r") is None  # 63 bytes


@pytest.mark.parametrize(
    ("name", "said"),
    [("", "the role name is empty"), ("pg_cruddur", "'pg_cruddur' is reserved by PostgreSQL"),
     ("public", "'public' is reserved by PostgreSQL")],
)  # fmt: skip
def test_a_role_name_postgresql_refuses_is_refused_while_parsing(
    seeded_db, tmp_path, name: str, said: str
) -> None:
    # A review: `--api-role ''` reached the server as a bare "zero-length delimited
    # identifier" SQL error, after the env file had been touched.
    env = {"PROD_CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    env_file = tmp_path / "roles.env"
    for option in ("--api-role", "--lambda-role"):
        args = ("--prod", "--yes", option, name, "--env-file", str(env_file))
        refused = here("db", "roles", *args, env=env)
        assert refused.returncode == 2, refused.stderr
        assert f"Invalid value for '{option}': {said}" in " ".join(refused.stderr.split())
    assert not env_file.exists() and not (tmp_path / "home").exists()


def test_a_migrate_that_fails_part_way_leaves_the_bookkeeping_the_owners(
    empty_db, admin, tmp_path
) -> None:
    # `db roles` before the first migration: its default privileges gave the API INSERT
    # and UPDATE on schema_migrations when a migration made it, and only a migrate that
    # ended well took them back.
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "20260101000000_notes.sql").write_text(
        "-- migrate:up\nCREATE TABLE notes (id int);\n-- migrate:down\nDROP TABLE notes;\n"
    )
    (folder / "20260102000000_fails.sql").write_text(
        "-- migrate:up\nSELECT 1/0;\n-- migrate:down\nSELECT 1;\n"
    )
    with _roles_given(empty_db, admin, tmp_path) as (api, env):
        failed = here("db", "migrate", "--migrations-dir", str(folder), env=env)
        assert failed.returncode == 1 and "division by zero" in failed.stderr, failed.stderr
        with psycopg.connect(empty_db) as conn:
            assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [
                ("20260101000000",)
            ]
            rights = conn.execute(
                "SELECT has_table_privilege(%s, 'schema_migrations', 'INSERT'),"
                " has_table_privilege(%s, 'schema_migrations', 'UPDATE'),"
                " has_table_privilege(%s, 'notes', 'INSERT')",
                [api, api, api],
            ).fetchone()
        # notes: a table grant.sql does not name is no one's but the owner's.
        assert rights == (False, False, False)


def test_role_names_with_dollar_quotes_are_granted_as_named(seeded_db, admin, tmp_path) -> None:
    # grant.sql wrote the names into a DO block's $$-quoted text, which `$$` ended early:
    # a syntax error after the roles were made, their passwords written nowhere.
    suffix = uuid.uuid4().hex[:8]
    api, lambda_ = f"t_api$${suffix}", f"t_lambda$$'{suffix}"
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    env_file = tmp_path / "roles.env"
    options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", str(env_file)]
    try:
        made = here("db", "roles", *options, env=env)
        assert made.returncode == 0, made.stderr
        assert set(_env_values(env_file)) == {
            "CRUDDUR_API_CONNECTION_URL", "CRUDDUR_LAMBDA_CONNECTION_URL"
        }  # fmt: skip
        with psycopg.connect(seeded_db) as conn:
            rights = conn.execute(
                "SELECT has_table_privilege(%s, 'schema_migrations', 'INSERT'),"
                " has_any_column_privilege(%s, 'activities', 'INSERT'),"
                " has_any_column_privilege(%s, 'users', 'INSERT')",
                [api, api, lambda_],
            ).fetchone()
        assert rights == (False, True, True)
    finally:
        _drop_roles(admin, seeded_db, api, lambda_)


def test_a_new_roles_password_is_kept_when_the_other_role_or_a_grant_fails(
    seeded_db, admin, tmp_path, monkeypatch
) -> None:
    # Each role is committed as it is made: the Lambda's refused (it exists and cannot
    # log in), or the grants failing, left the API's new password written nowhere.
    suffix = uuid.uuid4().hex[:8]
    api, lambda_ = f"cruddur_t_api_{suffix}", f"cruddur_t_lambda_{suffix}"
    admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(lambda_)))
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    env_file = tmp_path / "roles.env"
    options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", str(env_file)]
    try:
        # Refused before either role is made (it was refused after the API's was).
        refused = here("db", "roles", *options, env=env)
        assert refused.returncode == 1 and "cannot log in" in refused.stderr, refused.stderr
        assert not env_file.exists() or _env_values(env_file) == {}
        assert admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [api]).fetchone() is None
        admin.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(lambda_)))

        def failing_grant(*args, **kwargs):
            raise psycopg.errors.InsufficientPrivilege("permission denied for schema public")

        monkeypatch.setattr("cruddur.ops.roles.grant", failing_grant)
        rotated = here("db", "roles", "--rotate", *options, env=env)
        assert rotated.returncode == 1, rotated.stderr
        urls = _env_values(env_file)
        assert set(urls) == {"CRUDDUR_API_CONNECTION_URL", "CRUDDUR_LAMBDA_CONNECTION_URL"}
        # The file's passwords are the ones the roles have now.
        assert _who(urls["CRUDDUR_API_CONNECTION_URL"]) == api
        assert _who(urls["CRUDDUR_LAMBDA_CONNECTION_URL"]) == lambda_
    finally:
        _drop_roles(admin, seeded_db, api, lambda_)


def test_a_refused_lambda_role_leaves_the_api_roles_password_as_it_was(
    seeded_db, admin, tmp_path
) -> None:
    # `db roles --rotate` gave the API's role a new password, then refused the Lambda's
    # (a member of another role), exiting 1: the API's URL in use stopped working.
    suffix = uuid.uuid4().hex[:8]
    api, lambda_, group = (f"cruddur_t_{kind}_{suffix}" for kind in ("api", "lambda", "group"))
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", str(tmp_path / "r.env")]
    try:
        assert here("db", "roles", *options, env=env).returncode == 0
        before = _stored_password(admin, api)
        admin.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(group)))
        admin.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(lambda_))
        )
        refused = here("db", "roles", "--rotate", *options, env=env)
        assert refused.returncode == 1
        assert f'role "{lambda_}" exists with member of {group}' in refused.stderr
        assert _stored_password(admin, api) == before
    finally:
        _drop_roles(admin, seeded_db, api, lambda_)
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(group)))


def test_with_one_role_dropped_migrate_says_it_granted_neither(seeded_db, admin, tmp_path) -> None:
    # The grants name both roles: with the Lambda's dropped by hand none were given, a
    # table made anew was closed to the API, and migrate said nothing.
    suffix = uuid.uuid4().hex[:8]
    api, lambda_ = f"cruddur_t_api_{suffix}", f"cruddur_t_lambda_{suffix}"
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", str(tmp_path / "r.env")]
    try:
        assert here("db", "roles", *options, env=env).returncode == 0
        _drop_roles(admin, seeded_db, lambda_)
        migrated = here("db", "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        said = " ".join(migrated.stderr.split())
        assert f"privileges not granted again: this database has the API's role ({api})" in said
        assert "but no Lambda role" in said and "db roles` makes it" in said
    finally:
        _drop_roles(admin, seeded_db, api, lambda_)


def test_an_env_file_whose_folder_cannot_be_made_says_what_to_change(seeded_db, tmp_path) -> None:
    (tmp_path / "afile").write_text("")
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(tmp_path / "home")}
    chosen = here("db", "roles", "--env-file", str(tmp_path / "afile" / "sub" / "r.env"), env=env)
    assert chosen.returncode == 1
    assert "Not a directory" in chosen.stderr
    assert "give --env-file a file you can write" in chosen.stderr
    env["CRUDDUR_HOME"] = str(tmp_path / "afile" / "home")  # the file's default folder
    default = here("db", "roles", env=env)
    assert default.returncode == 1
    assert "set CRUDDUR_HOME to a folder you can write" in default.stderr, default.stderr


REBUILD_ACTIVITIES = """-- migrate:up
CREATE TABLE public.activities_new (LIKE public.activities INCLUDING ALL);
INSERT INTO public.activities_new SELECT * FROM public.activities;
DROP TABLE public.activities;
ALTER TABLE public.activities_new RENAME TO activities;
"""


def test_a_table_a_migration_makes_anew_is_the_apis_as_it_commits(
    seeded_db, admin, tmp_path
) -> None:
    # Its grants came back only once every migration had run: a later migration that
    # failed left the API refused on every feed ("permission denied for table
    # activities") until someone ran `db roles`.
    folder = tmp_path / "migrations"
    shutil.copytree(package_dir(), folder)
    (folder / "29990101000000_rebuild_activities.sql").write_text(REBUILD_ACTIVITIES)
    (folder / "29990102000000_fails.sql").write_text("-- migrate:up\nSELECT 1/0;\n")
    with _roles_given(seeded_db, admin, tmp_path) as (api, env):
        failed = here("db", "migrate", "--migrations-dir", str(folder), env=env)
        assert failed.returncode == 1 and "division by zero" in failed.stderr, failed.stderr
        with psycopg.connect(seeded_db) as conn:
            rights = conn.execute(
                "SELECT has_table_privilege(%s, 'activities', 'SELECT'),"
                " has_column_privilege(%s, 'activities', 'replies_count', 'UPDATE'),"
                " has_column_privilege(%s, 'activities', 'likes_count', 'UPDATE')",
                [api, api, api],
            ).fetchone()
        assert rights == (True, True, False)


def test_a_migrate_with_nothing_to_do_narrows_what_an_earlier_version_granted(
    seeded_db, admin, tmp_path
) -> None:
    # A deploy runs `db migrate`; grants narrowed in a new version reached a database
    # only with a migration to apply, and this version brought none.
    with _roles_given(seeded_db, admin, tmp_path) as (api, env):
        with psycopg.connect(seeded_db, autocommit=True) as conn:  # as an earlier version left it
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE ON users TO {}").format(
                sql.Identifier(api)))  # fmt: skip
            conn.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE"
                    " ON TABLES TO {}"
                ).format(sql.Identifier(api))
            )
        migrated = here("db", "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert "nothing (else) to migrate" in migrated.stderr
        with psycopg.connect(seeded_db) as conn:
            rights = conn.execute(
                "SELECT has_column_privilege(%s, 'users', 'email', 'SELECT'),"
                " has_table_privilege(%s, 'users', 'UPDATE'),"
                " (SELECT count(*) FROM pg_default_acl"
                "  WHERE %s = ANY(SELECT grantee::regrole::text FROM aclexplode(defaclacl)))",
                [api, api, api],
            ).fetchone()
        assert rights == (False, False, 0)


def test_migrations_that_drop_or_add_a_granted_column_migrate_and_roll_back(
    seeded_db, admin, tmp_path
) -> None:
    # The grants given inside each migration's transaction named every column grant.sql
    # names: a migration before the one that adds such a column (or a rollback of it)
    # failed on "column … does not exist", on every retry.
    folder = tmp_path / "migrations"
    shutil.copytree(package_dir(), folder)
    (folder / "29990101000000_drop_created_at.sql").write_text(
        "-- migrate:up\nALTER TABLE public.users DROP COLUMN created_at;\n"
        "-- migrate:down\nALTER TABLE public.users"
        " ADD COLUMN created_at timestamptz NOT NULL DEFAULT current_timestamp;\n"
    )
    select = "SELECT has_column_privilege(%s, 'users', %s, 'SELECT')"
    with _roles_given(seeded_db, admin, tmp_path) as (api, env):
        migrated = here("db", "migrate", "--migrations-dir", str(folder), env=env)
        assert migrated.returncode == 0, migrated.stderr
        with psycopg.connect(seeded_db) as conn:
            assert conn.execute(select, [api, "handle"]).fetchone() == (True,)
        back = here("db", "rollback", "--migrations-dir", str(folder), env=env)
        assert back.returncode == 0, back.stderr
        with psycopg.connect(seeded_db) as conn:  # the column is back, and the API's
            assert conn.execute(select, [api, "created_at"]).fetchone() == (True,)


def test_db_roles_gives_the_apis_role_its_timeouts_for_sessions_a_pooler_opens(
    seeded_db, role_names, tmp_path
) -> None:
    # PgBouncer refuses the `options` the API sends them in at connect: the role's own
    # defaults are what bound its statements there (README "Outages").
    api, lambda_ = role_names
    env_file = tmp_path / "roles.env"
    env = {
        "CONNECTION_URL": seeded_db,
        "CRUDDUR_HOME": str(tmp_path / "home"),
        "CRUDDUR_API_LOCK_TIMEOUT": "1500ms",
    }
    options = ["--api-role", api, "--lambda-role", lambda_, "--env-file", str(env_file)]
    made = here("db", "roles", *options, env=env)
    assert made.returncode == 0, made.stderr
    url = _env_values(env_file)["CRUDDUR_API_CONNECTION_URL"]
    with psycopg.connect(url) as conn:  # no options: as a pooler's server connection
        shown = [conn.execute(f"SHOW {name}").fetchone()[0] for name in SESSION_BOUNDS]
    assert shown == ["1500ms", "4s"]


SESSION_BOUNDS = ("lock_timeout", "statement_timeout")


def test_setup_checks_the_roles_file_before_it_drops_anything(
    seeded_db, admin, new_db_name, tmp_path
) -> None:
    # A review: a roles file that could not be written stopped setup at its last step,
    # after the drop, the migrations and the seed: the database rebuilt, its roles given
    # nothing (on production, the API could not read it). A review of that: on
    # production with --if-missing, a missing database was still made, migrated, seeded.
    home = tmp_path / "home"
    for name in ("db-roles.env", "db-roles-prod.env"):  # where the file goes: a folder
        (home / name).mkdir(parents=True)
    home.chmod(0o700)
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        conn.execute("INSERT INTO users (display_name, handle, email, cognito_user_id)"
                     " VALUES ('Kept', 'kept', 'kept@example.com', 'MOCK-kept')")  # fmt: skip
    env = {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(home)}
    missing = new_db_name()  # dropped after, should a setup make it
    prod = {**env, "PROD_CONNECTION_URL": seeded_db.replace(parse(seeded_db)["dbname"], missing)}
    for settings, args in (
        (env, ()),
        (env, ("--if-missing",)),
        (prod, ("--prod", "--yes")),
        (prod, ("--prod", "--if-missing", "--yes")),
    ):
        refused = here("db", "setup", *args, env=settings)
        assert refused.returncode == 1, (args, refused.stdout)
        assert "is not a regular file" in refused.stderr, refused.stderr
        assert "dropped" not in refused.stdout + refused.stderr
        assert "created" not in refused.stdout + refused.stderr
    with psycopg.connect(seeded_db) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE handle = 'kept'").fetchone() == (1,)
    made = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [missing]).fetchone()
    assert made is None
