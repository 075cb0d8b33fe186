"""When things break: unexpected errors, an unreachable database, request ids."""

from __future__ import annotations

import logging
import uuid

import psycopg
import pytest
from api_support import CheckedClient
from helpers import free_port
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cruddur.api import create_app
from cruddur.config import PoolSettings
from cruddur.db import Db
from cruddur.urls import parse, with_user


def test_an_unexpected_error_is_a_json_500_naming_the_logged_request_id(app, caplog) -> None:
    def broken() -> None:
        raise RuntimeError("secret internals")

    app.add_url_rule("/api/broken", "broken", broken)
    with caplog.at_level(logging.ERROR, logger="cruddur.api"):
        response = app.test_client().get("/api/broken")
    assert response.status_code == 500
    body = response.get_json()
    request_id = response.headers["X-Request-Id"]
    assert body["error"] == "internal_error" and body["request_id"] == request_id
    assert request_id in body["message"]
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log


def test_a_value_psycopg_cannot_read_back_is_a_500_and_one_the_server_refuses_a_422(
    app, caplog
) -> None:
    # Both are DataErrors. The server's (SQLSTATE class 22) is about a value the request
    # sent; psycopg's own, loading a result (`infinity` has no datetime), is not the
    # client's doing: it was a 422 "the database refused a value in the request".
    db = app.extensions["cruddur.db"]
    app.add_url_rule(
        "/api/read", "read", lambda: db.get().query_value("SELECT 'infinity'::timestamptz")
    )
    app.add_url_rule("/api/sent", "sent", lambda: db.get().query_value("SELECT %s::int", ["ten"]))
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="cruddur.api"):
        read = client.get("/api/read")
    assert read.status_code == 500
    assert read.get_json()["error"] == "internal_error"
    assert "Traceback" not in read.get_data(as_text=True)
    logged = [r for r in caplog.records if read.headers["X-Request-Id"] in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    sent = client.get("/api/sent")
    assert sent.status_code == 422
    assert sent.get_json()["error"] == "validation_failed"


def test_a_well_formed_request_id_is_kept_and_a_bad_one_replaced(api) -> None:
    kept = api.get("/api/health", headers={"X-Request-Id": "edge-proxy-1234"})
    assert kept.headers["X-Request-Id"] == "edge-proxy-1234"
    replaced = api.get("/api/health", headers={"X-Request-Id": "<script>'; --"})
    assert replaced.headers["X-Request-Id"] != "<script>'; --"
    assert len(replaced.headers["X-Request-Id"]) == 32


def test_an_unreachable_database_is_503_everywhere(api_settings, mint) -> None:
    down = Db("postgresql://postgres:pw@127.0.0.1:1/cruddur", PoolSettings(timeout=1))
    app = create_app(api_settings, database=down)
    api = CheckedClient(app)
    for path in ("/api/activities/home", "/api/activities/@andrewbrown", "/api/health",
                 "/api/dev/users"):  # fmt: skip
        response = api.get(path)
        assert response.status_code == 503, path
        assert response.headers["Retry-After"] == "1", path
        assert response.get_json()["error"] == "database_unavailable"
        assert "127.0.0.1" not in response.get_data(as_text=True)
    assert api.get("/api/health").get_json()["database"] == {"reachable": False}
    write = api.post("/api/activities", json={"message": "hi", "ttl": "1-day"}, token=mint())
    assert write.status_code == 503


def test_a_database_restart_costs_no_failed_read(api, admin, seeded_db: str) -> None:
    assert api.get("/api/activities/home").status_code == 200  # the pool is open
    dbname = parse(seeded_db)["dbname"]
    killed = admin.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND application_name = 'cruddur-api'",
        [dbname],
    ).fetchone()[0]
    assert killed >= 1
    assert api.get("/api/activities/home").status_code == 200
    assert api.get("/api/health").status_code == 200


def test_while_the_database_is_down_requests_fail_fast_between_attempts() -> None:
    from cruddur.api.db import AppDatabase
    from cruddur.db.reachability import DatabaseUnavailable

    made: list[Db] = []

    def make() -> Db:
        made.append(
            Db(
                "postgresql://postgres:pw@127.0.0.1:1/cruddur",
                PoolSettings(timeout=1),
                fail_fast=True,
            )
        )
        return made[-1]

    holder = AppDatabase(make)
    with pytest.raises(psycopg.OperationalError) as first:  # refused by the (absent) server
        holder.get()
    assert not isinstance(first.value, DatabaseUnavailable)
    try:
        for _ in range(3):
            with pytest.raises(DatabaseUnavailable):  # answered at once, nothing tried
                holder.get()
        assert len(made) == 1 and made[0].reachability.down
    finally:
        holder.close()


def test_a_server_with_no_connection_slot_left_is_busy_not_away(admin, seeded_db) -> None:
    # "too many clients" (max_connections, or a role's CONNECTION LIMIT) was taken for
    # an outage: every request a 503 "not reachable", health too, while the pool's open
    # connections could serve them; and a worker stayed so after slots freed up.
    from cruddur.db.reachability import Reachability

    role = f"cruddur_test_full_{uuid.uuid4().hex[:8]}"
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw' CONNECTION LIMIT 1").format(
            sql.Identifier(role)
        )
    )
    url = with_user(seeded_db, role, "pw")
    try:
        with psycopg.connect(url):  # the role's one slot, taken
            with pytest.raises(psycopg.OperationalError, match="too many connections"):
                psycopg.connect(url).close()
            gate = Reachability(lambda: psycopg.connect(url).close(), lambda: None)
            try:
                assert gate.verify() and not gate.down
                gate.admit()  # no DatabaseUnavailable
            finally:
                gate.close()
            # With several addresses, one refusing and one full (a dead second host,
            # `localhost` as ::1 and 127.0.0.1): the full one answered, it is busy.
            there = conninfo_to_dict(url)
            both = make_conninfo(
                url,
                host=f"127.0.0.1,{there.get('host', '127.0.0.1')}",
                port=f"{free_port()},{there.get('port', 5432)}",
            )
            gate = Reachability(lambda: psycopg.connect(both).close(), lambda: None)
            try:
                assert gate.verify() and not gate.down
            finally:
                gate.close()
    finally:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
