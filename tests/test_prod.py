"""`prod` routing and the production confirmation: only PROD_CONNECTION_URL's database changes."""

from __future__ import annotations

import pytest
from helpers import database_exists, run, tables

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
    assert tables(two_dbs["PROD_CONNECTION_URL"]) == {"users", "activities"}
    assert tables(two_dbs["CONNECTION_URL"]) == set()


@pytest.mark.parametrize("script", ["db-schema-load", "db-seed", "db-connect", "db-sessions"])
def test_each_script_routes_prod(two_dbs, script) -> None:
    # Without a schema, seed fails: on the prod database, which proves where it went.
    args = ["prod", "--yes"] if script in ("db-schema-load", "db-seed") else ["prod"]
    stdin = "SELECT current_database();\n" if script == "db-connect" else ""
    result = run(script, *args, env=two_dbs, stdin=stdin)
    prod_name = database_name(two_dbs["PROD_CONNECTION_URL"])
    assert prod_name in result.stderr + result.stdout
    assert database_name(two_dbs["CONNECTION_URL"]) not in result.stderr + result.stdout


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
    prod_name = database_name(two_dbs["PROD_CONNECTION_URL"])
    for answer in ("", "yes\n", "cruddur\n"):
        result = run(script, "prod", env=two_dbs, stdin=answer)
        assert result.returncode == 1
        assert "not confirmed, nothing done" in result.stderr
        assert "PRODUCTION" in result.stderr
    assert database_exists(admin, prod_name)
    assert tables(two_dbs["PROD_CONNECTION_URL"]) == set()


def test_typing_the_name_confirms(two_dbs) -> None:
    prod_name = database_name(two_dbs["PROD_CONNECTION_URL"])
    result = run("db-schema-load", "prod", env=two_dbs, stdin=f"{prod_name}\n")
    assert result.returncode == 0, result.stderr
    assert tables(two_dbs["PROD_CONNECTION_URL"]) == {"users", "activities"}


def test_local_verbs_do_not_ask(two_dbs) -> None:
    result = run("db-schema-load", env=two_dbs)  # no stdin, no --yes
    assert result.returncode == 0, result.stderr
    assert tables(two_dbs["CONNECTION_URL"]) == {"users", "activities"}


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
