"""The pooled Db and its helpers, against a real database."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import class_row, namedtuple_row

from cruddur.api.db import primary_db
from cruddur.config import PoolSettings, Settings
from cruddur.db import Db, template
from cruddur.db.templates import TemplateNotFound

USER = (
    "INSERT INTO public.users (display_name, handle, email, cognito_user_id) "
    "VALUES (%(name)s, %(handle)s, %(email)s, %(sub)s) RETURNING uuid"
)


def add_user(db: Db, handle: str, name: str = "Test User") -> uuid.UUID:
    return db.query_commit(
        USER, {"name": name, "handle": handle, "email": f"{handle}@example.com", "sub": handle}
    )


def test_query_commit_returns_what_returning_gives(db: Db) -> None:
    new = add_user(db, "newcomer")
    assert isinstance(new, uuid.UUID)
    assert db.query_value("SELECT handle FROM users WHERE uuid = %s", [new]) == "newcomer"


def test_query_commit_without_returning_gives_none_and_commits(db: Db) -> None:
    assert db.query_commit("UPDATE users SET display_name = 'X' WHERE handle = 'bayko'") is None
    assert db.query_value("SELECT display_name FROM users WHERE handle = 'bayko'") == "X"


def test_query_array_json_is_postgres_text(db: Db) -> None:
    text = db.query_array_json("SELECT handle FROM users ORDER BY handle;")
    assert isinstance(text, str)
    assert json.loads(text) == [{"handle": "andrewbrown"}, {"handle": "bayko"}, {"handle": "londo"}]


def test_query_array_json_of_no_rows_is_an_empty_array(db: Db) -> None:
    assert db.query_array_json("SELECT handle FROM users WHERE false") == "[]"


def test_query_object_json(db: Db) -> None:
    text = db.query_object_json(
        "SELECT handle, created_at FROM users WHERE handle = %(handle)s", {"handle": "bayko"}
    )
    assert isinstance(text, str)
    row = json.loads(text)
    assert row["handle"] == "bayko"
    assert datetime.fromisoformat(row["created_at"]).tzinfo is not None  # ISO 8601 with offset


def test_query_object_json_of_no_row_is_an_empty_object(db: Db) -> None:
    assert db.query_object_json("SELECT * FROM users WHERE handle = %s", ["nobody"]) == "{}"


def test_query_value_of_no_row_is_none(db: Db) -> None:
    assert db.query_value("SELECT uuid FROM users WHERE handle = %s", ["nobody"]) is None


@dataclass(frozen=True)
class Author:
    handle: str
    display_name: str


def test_named_rows_come_from_a_row_factory(db: Db) -> None:
    sql = "SELECT handle, display_name FROM users WHERE handle = ANY(%s) ORDER BY handle"
    rows = db.query_rows(sql, [["bayko", "londo"]], row_factory=class_row(Author))
    assert [row.handle for row in rows] == ["bayko", "londo"]
    assert all(isinstance(row, Author) and row.display_name for row in rows)
    one = db.query_row(sql, [["bayko"]], row_factory=namedtuple_row)
    assert one is not None and one.handle == "bayko"
    assert db.query_row(sql, [["nobody"]], row_factory=class_row(Author)) is None
    # The next plain query gets tuples again from the same kept cursor.
    assert db.query_rows(sql, [["bayko"]]) == [("bayko", one.display_name)]
    assert db.query_value("SELECT handle FROM users WHERE handle = 'bayko'") == "bayko"


def test_named_rows_keep_the_connections_one_cursor(seeded_db: str) -> None:
    with Db(seeded_db, PoolSettings(min_size=1, max_size=1)) as one:
        with one.connection() as conn:
            kept = conn.helper_cursor()
        one.query_rows("SELECT 1 AS n", row_factory=namedtuple_row)
        one.query_row("SELECT 1 AS n", row_factory=class_row(dict))
        one.query_value("SELECT 1")
        with one.connection() as conn:
            assert conn.helper_cursor() is kept


def test_database_errors_propagate_with_their_sqlstate(db: Db) -> None:
    with pytest.raises(errors.UniqueViolation) as caught:
        add_user(db, "andrewbrown")
    assert caught.value.sqlstate == "23505"
    with pytest.raises(errors.UndefinedTable) as caught:
        db.query_value("SELECT * FROM no_such_table")
    assert caught.value.sqlstate == "42P01"


def test_a_failed_write_leaves_nothing_behind(db: Db) -> None:
    before = db.query_value("SELECT count(*) FROM users")
    # Two rows in one statement: the first is fine, the second breaks a rule.
    with pytest.raises(errors.CheckViolation):
        db.query_commit(
            "INSERT INTO users (display_name, handle, email, cognito_user_id) "
            "VALUES ('A', 'first', 'a@b.c', 'first'), ('', 'x', 'x@y.z', 'x')"
        )
    assert db.query_value("SELECT count(*) FROM users") == before


def test_templates_are_loaded_by_name_and_cached() -> None:
    text = template("server", "sessions")
    assert "pg_stat_activity" in text
    assert template("server", "sessions") is text
    for bad in (("..", "schema"), ("server", "nope"), ()):
        with pytest.raises(TemplateNotFound):
            template(*bad)


def test_pool_survives_a_dropped_connection(seeded_db: str) -> None:
    with Db(seeded_db, PoolSettings(min_size=1, max_size=1)) as db:
        pid = db.query_value("SELECT pg_backend_pid()")
        with psycopg.connect(seeded_db, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        # The pool checks the connection before lending it and replaces the dead one.
        assert db.query_value("SELECT count(*) FROM users") == 3
        assert db.query_value("SELECT pg_backend_pid()") != pid


def test_db_must_be_opened_first(seeded_db: str) -> None:
    db = Db(seeded_db)
    with pytest.raises(RuntimeError, match="not open"):
        db.query_value("SELECT 1")


def test_open_reports_the_real_connection_error() -> None:
    db = Db("postgresql://postgres@127.0.0.1:1/cruddur", PoolSettings(timeout=1))
    with pytest.raises(psycopg.OperationalError, match="Connection refused"):
        db.open()


def test_pool_sizes_come_from_settings(seeded_db: str) -> None:
    with Db(seeded_db, PoolSettings(min_size=2, max_size=3)) as db:
        stats = db.pool.get_stats()
        assert stats["pool_min"] == 2
        assert stats["pool_max"] == 3


def test_the_service_pool_is_sized_from_the_environment(seeded_db: str) -> None:
    settings = Settings.from_env(
        {
            "CONNECTION_URL": seeded_db,
            "CRUDDUR_POOL_MIN_SIZE": "2",
            "CRUDDUR_POOL_MAX_SIZE": "5",
            "CRUDDUR_POOL_TIMEOUT": "2.5",
        }
    )
    with primary_db(settings) as db:
        stats = db.pool.get_stats()
        assert (stats["pool_min"], stats["pool_max"]) == (2, 5)
        assert db.pool.timeout == 2.5
        assert db.query_value("SELECT count(*) FROM users") == 3


def _end_every_other_session(url: str) -> int:
    """What a server restart does to url's database's connections: how many it ended."""
    with psycopg.connect(url, autocommit=True) as other:
        return other.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]


@contextmanager
def _unchecked_pool_whose_connection_died(url: str) -> Iterator[tuple[Db, int]]:
    """The API's kind of pool (autocommit, no check per checkout) of one connection,
    which another session has just terminated: the pool, and the dead backend's pid."""
    with Db(url, PoolSettings(min_size=1, max_size=1), autocommit=True, check=False) as db:
        pid = db.query_value("SELECT pg_backend_pid()")
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        yield db, pid


def test_unchecked_pool_reads_retry_once_on_a_dropped_connection(seeded_db: str) -> None:
    # The read that meets the dead connection is repeated on a fresh one, so the caller
    # never sees the drop.
    with _unchecked_pool_whose_connection_died(seeded_db) as (db, pid):
        assert db.query_rows("SELECT count(*) FROM users") == [(3,)]
        assert db.query_value("SELECT pg_backend_pid()") != pid


def test_unchecked_pool_reads_survive_a_restart_that_drops_every_connection(
    seeded_db: str,
) -> None:
    # A server restart kills the idle connections too: the retry must not take another
    # dead one from the pool.
    settings = PoolSettings(min_size=3, max_size=3)
    with Db(seeded_db, settings, autocommit=True, check=False) as db:
        db.pool.wait()  # all three open
        assert _end_every_other_session(seeded_db) == 3
        for _ in range(3):
            assert db.query_rows("SELECT count(*) FROM users") == [(3,)]


def test_unchecked_pool_does_not_repeat_writes(seeded_db: str) -> None:
    with _unchecked_pool_whose_connection_died(seeded_db) as (db, _):
        with pytest.raises(psycopg.OperationalError):
            db.query_commit("UPDATE users SET display_name = display_name || '!'")
        # The failed write changed nothing, and the pool has a working connection again.
        assert db.query_value("SELECT count(*) FROM users WHERE display_name LIKE '%!'") == 0


def test_the_apis_pool_never_sends_a_write_down_a_connection_the_server_closed(
    seeded_db: str,
) -> None:
    # A write is never repeated, so after a restart (every pooled connection dropped)
    # the API's pool must see each dead connection before it sends anything on it.
    settings = PoolSettings(min_size=3, max_size=3)
    with Db(seeded_db, settings, autocommit=True, check=False, fail_fast=True) as db:
        db.pool.wait()  # all three open, idle
        assert _end_every_other_session(seeded_db) == 3
        time.sleep(0.2)  # the backends' ends reach this side's sockets
        for _ in range(3):
            db.query_commit("UPDATE users SET display_name = display_name || '!'"
                            " WHERE handle = 'bayko'")  # fmt: skip
        assert db.query_value("SELECT display_name FROM users WHERE handle = 'bayko'")[-3:] == "!!!"


def test_a_connection_cut_just_after_its_answer_is_never_pooled_again(seeded_db: str) -> None:
    # The deadline (a replica's reads) passed after the rows had come but before the
    # read let go: the socket was shut down, yet the connection went back to the pool,
    # and the next read on it failed ("server closed the connection unexpectedly").
    pool = PoolSettings(min_size=1, max_size=1)
    with Db(seeded_db, pool, autocommit=True, check=False, deadline=0.3) as db:

        def slow_after_the_answer(conn):
            rows = conn.execute("SELECT 1").fetchall()
            time.sleep(0.6)  # the watcher cuts the socket meanwhile
            return rows

        assert db._using(slow_after_the_answer) == [(1,)]
        with db.pinned() as pinned:  # no second try on this path: the next connection works
            assert pinned.query_value("SELECT 2") == 2
