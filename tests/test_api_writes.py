"""Writes over the real database: new cruds, replies, validation, hostile bodies."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import datetime

import psycopg
import pytest
from api_support import snapshot

from cruddur.services.validation import TTLS


def _row(url: str, activity_uuid: str) -> dict:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "SELECT a.*, u.handle FROM activities a JOIN users u ON u.uuid = a.user_uuid"
            " WHERE a.uuid = %s",
            [activity_uuid],
        ).fetchone()


def _seed_parent(url: str) -> dict:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("SELECT * FROM activities WHERE replies_count = 2").fetchone()


@pytest.mark.parametrize("ttl", list(TTLS))
def test_a_new_crud_is_stored_and_returned_as_stored(api, mint, seeded_db: str, ttl) -> None:
    response = api.post(
        "/api/activities", json={"message": "Hello, Cruddur", "ttl": ttl}, token=mint("bayko")
    )
    assert response.status_code == 201
    created = response.get_json()
    stored = _row(seeded_db, created["uuid"])
    assert stored["handle"] == created["handle"] == "bayko"
    assert stored["message"] == created["message"] == "Hello, Cruddur"
    assert stored["expires_at"] - stored["created_at"] == TTLS[ttl]
    assert datetime.fromisoformat(created["expires_at"]) == stored["expires_at"]
    assert created["reply_to_activity_uuid"] is None
    home = api.get("/api/activities/home").get_json()
    assert home[0]["uuid"] == created["uuid"]


def test_a_new_crud_and_a_reply_say_where_they_are(api, mint, seeded_db: str) -> None:
    # 201 Created names the new resource: the crud's own GET route, which shows it.
    parent = _seed_parent(seeded_db)
    for path, body in (
        ("/api/activities", {"message": "Hello", "ttl": "1-day"}),
        (f"/api/activities/{parent['uuid']}/reply", {"message": "Me too"}),
    ):
        response = api.post(path, json=body, token=mint("bayko"))
        assert response.status_code == 201
        created = response.get_json()["uuid"]
        location = response.headers["Location"]
        assert location == f"/api/activities/{created}"
        read_after = response.headers.get("X-Read-After")  # with a replica: read the write
        shown = api.get(location, headers={"X-Read-After": read_after} if read_after else {})
        assert shown.status_code == 200
        assert shown.get_json()["activity"]["uuid"] == created


def test_every_failing_field_is_listed_at_once(api, mint, seeded_db: str) -> None:
    before = snapshot(seeded_db)
    cases = {
        json.dumps({"message": "   ", "ttl": "2-weeks"}): {
            ("message", "message_blank"),
            ("ttl", "ttl_unknown"),
        },
        json.dumps({"message": "x" * 281}): {
            ("message", "message_exceed_max_chars"),
            ("ttl", "ttl_blank"),
        },
        json.dumps({}): {("message", "message_blank"), ("ttl", "ttl_blank")},
        json.dumps({"message": 5, "ttl": 30}): {
            ("message", "message_not_text"),
            ("ttl", "ttl_unknown"),
        },
    }
    for body, expected in cases.items():
        response = api.post(
            "/api/activities", data=body, content_type="application/json", token=mint()
        )
        assert response.status_code == 422, body
        answer = response.get_json()
        assert answer["error"] == "validation_failed"
        assert {(e["field"], e["code"]) for e in answer["errors"]} == expected, body
    assert snapshot(seeded_db) == before


@pytest.mark.parametrize(
    "message",
    [
        "\u200b", "\u200b \u200d", "\ufeff", "\u2060\u200e\u200f", "\u3164", "\u2800\n", "\ufe0f",
        # Beyond the BMP (each was a 201): a variation selector, tag characters, a
        # shorthand format control, a zero-width space and a variation selector, beams.
        "\U000e0100", "\U000e0041\U000e0042", "\U0001bca0", "\u200b\U000e0101",
        "\U0001d173 \U0001d17a",
        # Each was a 201: the Arabic letter mark (a direction mark), control characters
        # (C0, DEL, C1), an interlinear annotation mark, an Egyptian format control.
        "\u061c", "\u3000\u061c", "\u200b\u061c", "\u0001", "\u007f", "\u009f \u0080",
        "\ufff9", "\U00013430",
        # Each was a 201: default-ignorable code points the classes left out.
        "\u2065", "\ufff0", "\ufff8", "\U000e0080", "\U000e01f0", "\U000e0fff",
    ],
)  # fmt: skip
def test_a_message_of_invisible_characters_is_blank(api, mint, seeded_db: str, message) -> None:
    # A zero-width space is not whitespace to str.strip(): such a crud showed as empty.
    before = snapshot(seeded_db)
    token = mint()
    parent = api.get("/api/activities/home").get_json()[0]["uuid"]
    for path, body in [
        ("/api/activities", {"message": message, "ttl": "1-hour"}),
        (f"/api/activities/{parent}/reply", {"message": message}),
    ]:
        response = api.post(path, json=body, token=token)
        assert response.status_code == 422, (path, message)
        assert [e["code"] for e in response.get_json()["errors"]] == ["message_blank"]
    assert snapshot(seeded_db) == before


@pytest.mark.parametrize(
    "message",
    [
        "👩\u200d💻", "a\u200b", "\u200f\u05e9\u05dc\u05d5\u05dd", "☺\ufe0f",
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland's flag: tags
    ],
)  # fmt: skip
def test_invisible_characters_beside_visible_ones_are_kept(
    api, mint, seeded_db: str, message
) -> None:
    response = api.post("/api/activities", json={"message": message, "ttl": "1-hour"}, token=mint())
    assert response.status_code == 201
    assert _row(seeded_db, response.get_json()["uuid"])["message"] == message


def test_280_characters_fit_and_count_characters_not_bytes(api, mint, seeded_db: str) -> None:
    message = "🦀" * 280  # 1,120 bytes in UTF-8
    response = api.post("/api/activities", json={"message": message, "ttl": "1-hour"}, token=mint())
    assert response.status_code == 201
    assert _row(seeded_db, response.get_json()["uuid"])["message"] == message


@pytest.mark.parametrize(
    "message",
    [
        "'; DROP TABLE activities; --",
        "Robert'); DELETE FROM users WHERE ('1'='1",
        "%(message)s %s {0} $1",
        "مرحبا بالعالم — שלום עולם",
        "\u202eevil\u202c and 👩‍👩‍👧‍👦 family",
        'line one\nline two\ttabbed \\ backslash "quoted"',
        "<script>alert(1)</script>",
    ],
)
def test_hostile_messages_are_stored_verbatim(api, mint, seeded_db: str, message: str) -> None:
    response = api.post("/api/activities", json={"message": message, "ttl": "1-day"}, token=mint())
    assert response.status_code == 201
    assert response.get_json()["message"] == message
    assert _row(seeded_db, response.get_json()["uuid"])["message"] == message
    with psycopg.connect(seeded_db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 3


def test_refused_bodies_change_nothing(api, mint, seeded_db: str) -> None:
    before = snapshot(seeded_db)
    token = mint()
    refusals = [
        # (body bytes, content type, status, error)
        (b'{"message": "a\\u0000b", "ttl": "1-day"}', "application/json", 422, None),
        (b'{"message": "lone \\ud800", "ttl": "1-day"}', "application/json", 422, None),
        (b'{"message": "hi", "ttl": "1-day"', "application/json", 400, "invalid_json"),
        (b'["message", "hi"]', "application/json", 400, "invalid_json"),
        (b'"just a string"', "application/json", 400, "invalid_json"),
        (b'{"message": "caf\xe9", "ttl": "1-day"}', "application/json", 400, "invalid_json"),
        (b"message=hi&ttl=1-day", "application/x-www-form-urlencoded", 415, None),
        (b'{"message": "hi", "ttl": "1-day"}', "text/plain", 415, None),
        (json.dumps({"message": "x" * 100_000, "ttl": "1-day"}).encode(), "application/json",
         413, "body_too_large"),
    ]  # fmt: skip
    for body, content_type, status, error in refusals:
        response = api.post("/api/activities", data=body, content_type=content_type, token=token)
        assert response.status_code == status, (body[:40], response.get_json())
        if error:
            assert response.get_json()["error"] == error
    nul = api.post(
        "/api/activities", data=refusals[0][0], content_type="application/json", token=token
    )
    assert nul.get_json()["errors"][0]["code"] == "message_invalid_characters"
    assert snapshot(seeded_db) == before


def test_a_body_in_another_charset_or_compressed_is_a_415(api, mint, seeded_db: str) -> None:
    # A gzipped body was read as it came (400 "not UTF-8"), and one declared latin-1 was
    # read as UTF-8: a client is told what to send instead, and nothing is stored.
    before = snapshot(seeded_db)
    token = mint()
    crud = {"message": "café", "ttl": "1-day"}
    latin = json.dumps(crud, ensure_ascii=False).encode("latin-1")
    utf8 = json.dumps(crud, ensure_ascii=False).encode()
    for body, headers, content_type, said in [
        (gzip.compress(json.dumps(crud).encode()), {"Content-Encoding": "gzip"},
         "application/json", "uncompressed"),
        (latin, {}, "application/json; charset=latin-1", "UTF-8"),
        # The last charset named was the one read.
        (latin, {}, "application/json; charset=latin-1; charset=utf-8", "one charset"),
        # Spaced around "=", werkzeug drops the parameter: UTF-8 bytes declared latin-1
        # were read as UTF-8 and stored (201), a text other than the one sent.
        (utf8, {}, "application/json; charset = latin-1", "UTF-8"),
        (utf8, {}, 'application/json;charset= "latin-1"', "UTF-8"),
        # What the server hands on for `gzip\xff` (a byte outside ASCII): an empty value.
        (gzip.compress(json.dumps(crud).encode()), {"Content-Encoding": ""},
         "application/json", "uncompressed"),
        # JSON under another media type: werkzeug's is_json takes any */*+json.
        (json.dumps(crud).encode(), {}, "application/problem+json", "application/json"),
        (json.dumps(crud).encode(), {}, "application/vnd.api+json", "application/json"),
    ]:  # fmt: skip
        response = api.post(
            "/api/activities", data=body, content_type=content_type, headers=headers, token=token
        )
        assert response.status_code == 415, response.get_json()
        assert said in response.get_json()["message"]
    assert snapshot(seeded_db) == before
    spaced = api.post(
        "/api/activities", data=utf8, content_type='application/json; charset = "UTF-8"',
        token=token,
    )  # fmt: skip
    assert spaced.status_code == 201, spaced.get_json()
    assert spaced.get_json()["message"] == "café"
    sent = json.dumps(crud).encode()
    for content_type in (
        "application/json; charset=UTF-8",
        "application/json; charset=utf8",
        "application/json; charset=us-ascii",  # ASCII is UTF-8 too (json.dumps's output)
    ):
        response = api.post("/api/activities", data=sent, content_type=content_type, token=token)
        assert response.status_code == 201, response.get_json()
    identity = api.post(
        "/api/activities", data=sent, content_type="application/json",
        headers={"Content-Encoding": "identity"}, token=token,
    )  # fmt: skip
    assert identity.status_code == 201, identity.get_json()
    # Declared ASCII, it must be: "café" in UTF-8 so declared was read as UTF-8 and stored.
    stored = snapshot(seeded_db)
    for content_type in ("application/json; charset=us-ascii", "application/json;charset=ASCII"):
        not_ascii = api.post("/api/activities", data=utf8, content_type=content_type, token=token)
        assert not_ascii.status_code == 400, not_ascii.get_json()
        assert "not ASCII" in not_ascii.get_json()["message"]
    assert snapshot(seeded_db) == stored


def test_a_reply_counts_on_its_parent_and_expires_with_it(api, mint, seeded_db: str) -> None:
    parent = _seed_parent(seeded_db)
    response = api.post(
        f"/api/activities/{parent['uuid']}/reply", json={"message": "Me too"}, token=mint("londo")
    )
    assert response.status_code == 201
    reply = response.get_json()
    assert reply["reply_to_activity_uuid"] == str(parent["uuid"])
    assert reply["handle"] == "londo"
    stored = _row(seeded_db, reply["uuid"])
    assert stored["expires_at"] == parent["expires_at"]
    assert _row(seeded_db, str(parent["uuid"]))["replies_count"] == 3
    shown = api.get(f"/api/activities/{parent['uuid']}").get_json()
    assert shown["activity"]["replies_count"] == 3
    assert shown["replies"][-1]["uuid"] == reply["uuid"]  # oldest first: the new one last


def test_replies_allow_1024_characters(api, mint, seeded_db: str) -> None:
    parent = _seed_parent(seeded_db)["uuid"]
    ok = api.post(f"/api/activities/{parent}/reply", json={"message": "r" * 1024}, token=mint())
    assert ok.status_code == 201
    long = api.post(f"/api/activities/{parent}/reply", json={"message": "r" * 1025}, token=mint())
    assert long.status_code == 422
    assert long.get_json()["errors"][0]["code"] == "message_exceed_max_chars_1024"


def test_replies_to_missing_expired_or_malformed_cruds(api, mint, seeded_db: str) -> None:
    with psycopg.connect(seeded_db) as conn:
        (expired,) = conn.execute(
            "SELECT uuid::text FROM activities WHERE expires_at <= now()"
        ).fetchone()
    before = snapshot(seeded_db)
    body = {"json": {"message": "hello?"}, "token": mint()}
    assert api.post(f"/api/activities/{uuid.uuid4()}/reply", **body).status_code == 404
    assert api.post(f"/api/activities/{expired}/reply", **body).status_code == 404
    malformed = api.post("/api/activities/not-a-uuid/reply", **body)
    assert malformed.status_code == 400
    assert malformed.get_json()["error"] == "invalid_activity_uuid"
    assert snapshot(seeded_db) == before


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])
def test_a_reply_that_waited_past_its_parents_end_is_a_404(
    app, mint, seeded_db: str, keyed: bool
) -> None:
    # A review: a reply kept waiting by another reply's lock on the parent was checked
    # against the time its transaction began, and stored (201, the count raised) though
    # the parent had expired while it waited. (Once the other reply commits, PostgreSQL
    # checks the parent's row again, now against the time then.)
    import threading
    import time

    with psycopg.connect(seeded_db, autocommit=True) as conn:
        (parent,) = conn.execute(
            "INSERT INTO activities (user_uuid, message, expires_at)"
            " SELECT uuid, 'about to go', clock_timestamp() + interval '300 ms'"
            " FROM users WHERE handle = 'andrewbrown' RETURNING uuid::text"
        ).fetchone()
    headers = {"Authorization": f"Bearer {mint()}"}
    if keyed:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    answered: list[int] = []
    with psycopg.connect(seeded_db) as holder:  # another reply, holding the parent's row
        holder.execute(
            "UPDATE activities SET replies_count = replies_count + 1 WHERE uuid = %s", [parent]
        )
        reply = threading.Thread(
            target=lambda: answered.append(
                app.test_client()
                .post(f"/api/activities/{parent}/reply", json={"message": "late"}, headers=headers)
                .status_code
            )
        )
        reply.start()
        time.sleep(0.6)  # the reply waits for the row; the parent expires meanwhile
        holder.commit()
    reply.join(timeout=30)
    assert answered == [404]
    assert _row(seeded_db, parent)["replies_count"] == 1  # the other reply's alone
    with psycopg.connect(seeded_db) as conn:
        late = conn.execute("SELECT count(*) FROM activities WHERE message = 'late'").fetchone()
    assert late == (0,)


def test_concurrent_replies_are_all_counted(app, mint, seeded_db: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    parent = _seed_parent(seeded_db)["uuid"]
    token = mint()

    def reply(n: int) -> int:
        client = app.test_client()
        return client.post(
            f"/api/activities/{parent}/reply",
            json={"message": f"reply {n}"},
            headers={"Authorization": f"Bearer {token}"},
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(reply, range(40)))
    assert statuses == [201] * 40
    assert _row(seeded_db, str(parent))["replies_count"] == 2 + 40


def test_a_stored_write_is_a_201_even_when_its_read_position_cannot_be_had(
    api_settings, api_url: str, mint, seeded_db: str
) -> None:
    """With a replica, the 201 carries the primary's WAL position, asked after the commit.
    If that question fails, the crud is stored all the same: an error status would have
    the client post it again."""
    from dataclasses import replace

    from api_support import CheckedClient

    from cruddur.api import create_app

    with psycopg.connect(seeded_db, autocommit=True) as owner:
        owner.execute("REVOKE EXECUTE ON FUNCTION pg_current_wal_insert_lsn() FROM PUBLIC")
    # A "replica" that is the primary itself: enough for the API to ask the position.
    settings = replace(api_settings, replica=replace(api_settings.replica, reader_url=api_url))
    app = create_app(settings)
    try:
        response = CheckedClient(app).post(
            "/api/activities", json={"message": "once", "ttl": "1-day"}, token=mint("bayko")
        )
    finally:
        app.extensions["cruddur.feed_cache"].close()
        app.extensions["cruddur.db"].close()
    assert response.status_code == 201, response.get_data(as_text=True)
    assert "X-Read-After" not in response.headers
    with psycopg.connect(seeded_db) as conn:
        stored = conn.execute("SELECT count(*) FROM activities WHERE message = 'once'").fetchone()
    assert stored == (1,)
