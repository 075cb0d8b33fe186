"""Hostile values through the data layer: stored verbatim, or refused with nothing changed."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from cruddur.db import Db, InvalidText
from cruddur.db.errors import explain

INSERT = (
    "INSERT INTO public.activities (user_uuid, message) "
    "VALUES ((SELECT uuid FROM users WHERE handle = %(handle)s), %(message)s) RETURNING uuid"
)

VERBATIM = [
    "'; DROP TABLE users; --",
    "Robert'); DROP TABLE activities;--",
    "quotes ' \" ` and a backslash \\ and %s %(x)s {}",
    "emoji 🦄🔥 and right-to-left: שלום עולם مرحبا",
    "x" * 1024,
    "line\nbreaks\r\nand\ttabs",
]


def snapshot(db: Db) -> str:
    return db.query_value(
        "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM ("
        "SELECT u::text AS t FROM users u UNION ALL SELECT a::text FROM activities a) s"
    )


@pytest.mark.parametrize("message", VERBATIM)
def test_stored_verbatim(db: Db, message: str) -> None:
    new = db.query_commit(INSERT, {"handle": "andrewbrown", "message": message})
    assert db.query_value("SELECT message FROM activities WHERE uuid = %s", [new]) == message
    assert db.query_value("SELECT count(*) FROM users") == 3  # the tables are all still there


@pytest.mark.parametrize(
    ("message", "error", "kind"),
    [
        ("nul \x00 byte", InvalidText, "invalid-text"),
        ("lone surrogate \udcff from undecodable bytes", InvalidText, "invalid-text"),
        ("y" * 10_000, errors.CheckViolation, "check"),
        ("y" * 100_000, errors.CheckViolation, "check"),
        ("   \n\t ", errors.CheckViolation, "check"),
    ],
)
def test_refused_with_a_clear_error_and_nothing_changed(
    db: Db, message: str, error: type[Exception], kind: str
) -> None:
    before = snapshot(db)
    with pytest.raises(error) as caught:
        db.query_commit(INSERT, {"handle": "andrewbrown", "message": message})
    assert caught.value.sqlstate in ("22021", "23514")  # typed, with a SQLSTATE
    explained = explain(caught.value)
    assert explained is not None and explained.kind == kind
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("created_at", "expires_at"),
    [("now", "infinity"), ("-infinity", "now"), ("-infinity", "infinity")],
)
def test_infinite_times_are_refused(db: Db, created_at: str, expires_at: str) -> None:
    # psycopg cannot read `infinity` back into a datetime, and OpenAPI's date-time has none.
    before = snapshot(db)
    with pytest.raises(errors.CheckViolation) as caught:
        db.query_commit(
            "INSERT INTO public.activities (user_uuid, message, created_at, expires_at)"
            " VALUES ((SELECT uuid FROM users WHERE handle = 'londo'), 'x',"
            " %s::timestamptz, %s::timestamptz)",
            [created_at, expires_at],
        )
    assert caught.value.diag.constraint_name == "activities_times_finite"
    assert snapshot(db) == before


@pytest.mark.parametrize(
    "handle", ["'; DROP TABLE users; --", "a b", "h" * 65, "", "bad/slash", "al\x00ice"]
)
def test_bad_handles_are_refused(db: Db, handle: str) -> None:
    before = snapshot(db)
    with pytest.raises((errors.CheckViolation, psycopg.DataError)):
        db.query_commit(
            "INSERT INTO users (display_name, handle, email, cognito_user_id) "
            "VALUES (%s, %s, %s, %s)",
            ["Name", handle, "e@example.com", f"sub-{len(handle)}"],
        )
    assert snapshot(db) == before


def test_injection_in_a_lookup_matches_nothing(db: Db) -> None:
    found = db.query_array_json(
        "SELECT handle FROM users WHERE handle = %(handle)s", {"handle": "x' OR '1'='1"}
    )
    assert found == "[]"
