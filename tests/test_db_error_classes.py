"""The SQLSTATE class `cruddur_db_errors_total` counts each database error under, for
errors a real PostgreSQL, a real libpq and a real pool raise."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from helpers import free_port
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from cruddur.telemetry.metrics import sqlstate_class
from cruddur.urls import with_user


def _raised(action) -> BaseException:
    with pytest.raises(psycopg.Error) as caught:  # PoolTimeout is one too
        action()
    return caught.value


def test_a_connection_refused_or_lost_is_class_08(admin, server_url: str) -> None:
    # libpq reports these with no SQLSTATE: counted under "none" with the pool's timeout,
    # an alert on class 08 (connection exception) never fired in an outage.
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    assert sqlstate_class(_raised(lambda: psycopg.connect(closed, connect_timeout=2))) == "08"
    role = f"cruddur_test_nologin_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    try:
        refused = _raised(lambda: psycopg.connect(with_user(server_url, role, "x")))
        assert sqlstate_class(refused) == "08"
    finally:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    # A session the server ends says why (57P01, operator intervention): kept as it is.
    with psycopg.connect(server_url, autocommit=True) as conn:
        admin.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
        ended = _raised(lambda: conn.execute("SELECT 1"))
    assert sqlstate_class(ended) == "57"


def test_the_pools_timeout_and_the_servers_own_errors_keep_theirs(server_url: str) -> None:
    pool = ConnectionPool(server_url, min_size=1, max_size=1, timeout=0.2)
    with pool, pool.connection() as conn:
        busy = _raised(lambda: pool.getconn())
        duplicate = _raised(
            lambda: conn.execute(
                "CREATE TEMP TABLE t (x int PRIMARY KEY); INSERT INTO t VALUES (1), (1)"
            )
        )
    assert isinstance(busy, PoolTimeout) and sqlstate_class(busy) == "none"
    assert sqlstate_class(duplicate) == "23"
    # The client's own mistake (two placeholders, one value) has no SQLSTATE either: not
    # a connection error, which an alert on 08 would page someone for.
    with psycopg.connect(server_url) as conn:
        mismatch = _raised(lambda: conn.execute("SELECT %s, %s", [1]))
    assert sqlstate_class(mismatch) == "none"
