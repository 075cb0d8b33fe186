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


INSERT_TIMES = (
    "INSERT INTO public.activities (user_uuid, message, created_at, expires_at)"
    " VALUES ((SELECT uuid FROM users WHERE handle = 'londo'), 'x',"
    " %s::timestamptz, %s::timestamptz) RETURNING uuid"
)


@pytest.mark.parametrize(
    ("created_at", "expires_at"),
    [
        ("0001-06-01 00:00+00 BC", "9999-01-01+00"),  # a 500 on the user's feed
        ("now", "10000-01-01+00"),  # a 500 on home; "10000-01-01T00:00:00+00:00" shown
        ("0001-01-01 00:00+00", "now"),  # year 1 in UTC, 1 BC in New York
        ("now", "9999-12-31 12:00+00"),  # 9999 in UTC, 10000 in Kiritimati
    ],
)
def test_times_a_datetime_cannot_hold_in_every_time_zone_are_refused(
    db: Db, created_at: str, expires_at: str
) -> None:
    # PostgreSQL takes years BC and after 9999; psycopg reads neither into a datetime,
    # and OpenAPI's date-time writes neither.
    before = snapshot(db)
    with pytest.raises(errors.CheckViolation) as caught:
        db.query_commit(INSERT_TIMES, [created_at, expires_at])
    assert caught.value.diag.constraint_name == "activities_times_in_range"
    assert snapshot(db) == before


@pytest.mark.parametrize(
    "zone", ["UTC", "America/New_York", "Asia/Manila", "Pacific/Kiritimati", "America/Sitka"]
)
def test_the_earliest_and_latest_times_kept_are_read_back_in_any_time_zone(
    db: Db, seeded_db: str, zone: str
) -> None:
    # Manila's time in year 1 is 15:56:08 behind UTC, Kiritimati's in 9999 14 hours ahead:
    # a day inside years 1 and 9999 keeps each time a datetime in every zone.
    first, last = "0001-01-02 00:00+00", "9999-12-30 23:59:59.999999+00"
    kept = db.query_commit(INSERT_TIMES, [first, last])
    with psycopg.connect(seeded_db, options=f"-c TimeZone={zone}") as conn:
        created_at, expires_at = conn.execute(
            "SELECT created_at, expires_at FROM activities WHERE uuid = %s", [kept]
        ).fetchone()
        assert created_at.year == 1 and expires_at.year == 9999


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
