"""Idempotency-Key on the writes: a retried crud or reply is stored once, over the real
database (api/activities.py, services/activities.py, activities/create_keyed.sql)."""

from __future__ import annotations

import re
import threading
import time
import uuid

import psycopg
import pytest
import yaml
from api_support import snapshot

from cruddur.api import OPENAPI

KEY_SCHEMA = yaml.safe_load(OPENAPI.read_text())["components"]["parameters"]["IdempotencyKey"][
    "schema"
]
CRUD = {"message": "sent once, retried", "ttl": "1-day"}


def _count(url: str, message: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM activities WHERE message = %s", [message]
        ).fetchone()[0]


def _keyed(key: str) -> dict[str, dict[str, str]]:
    return {"headers": {"Idempotency-Key": key}}


def test_a_replayed_write_drops_the_kept_first_page(api, mint, api_settings) -> None:
    # A review: a replay answered 201 without dropping this worker's kept first page, so
    # a client whose first attempt committed elsewhere (its answer lost on a server with
    # the cache off, or a worker that died after the commit) then read a page without it.
    from dataclasses import replace

    from api_support import CheckedClient

    from cruddur.api import create_app

    token, key = mint("bayko"), str(uuid.uuid4())
    first_attempt = create_app(
        api_settings.but(serve=replace(api_settings.serve, feed_cache=False))
    )
    try:
        assert api.get("/api/activities/home").status_code == 200  # starts the listener
        assert (
            api.client.application.extensions["cruddur.feed_cache"]
            .pages()
            .changes.wait_listening(10)
        )
        assert api.get("/api/activities/home").status_code == 200  # kept now
        crud = {"message": f"first answer lost {key[:8]}", "ttl": "1-day"}
        first = CheckedClient(first_attempt).post(
            "/api/activities", json=crud, token=token, **_keyed(key)
        )
        assert first.status_code == 201
        again = api.post("/api/activities", json=crud, token=token, **_keyed(key))
        assert again.headers["Idempotent-Replayed"] == "true"
        messages = [a["message"] for a in api.get("/api/activities/home").get_json()]
        assert crud["message"] in messages
    finally:
        first_attempt.extensions["cruddur.feed_cache"].close()
        first_attempt.extensions["cruddur.db"].close()


def test_a_retry_of_a_stored_crud_is_answered_as_the_first_and_stores_nothing(
    api, mint, seeded_db: str
) -> None:
    # The first answer may have been lost (a 503 after the commit, a dropped connection):
    # the client sends the same request with the same key again, as often as it likes.
    token, key = mint("bayko"), str(uuid.uuid4())
    first = api.post("/api/activities", json=CRUD, token=token, **_keyed(key))
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    for _ in range(2):
        again = api.post("/api/activities", json=CRUD, token=token, **_keyed(key))
        assert again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.get_data() == first.get_data()
        assert again.headers["Location"] == first.headers["Location"]
    assert _count(seeded_db, CRUD["message"]) == 1
    # The same body spelled otherwise (key order, spaces) is the same request.
    respelled = api.post(
        "/api/activities",
        data='{ "ttl": "1-day", "message": "sent once, retried" }',
        content_type="application/json",
        token=token,
        **_keyed(key),
    )
    assert respelled.status_code == 201 and respelled.get_data() == first.get_data()
    assert _count(seeded_db, CRUD["message"]) == 1


def test_a_keyed_reply_retried_counts_once(api, mint, seeded_db: str) -> None:
    token = mint("bayko")
    parent = api.post("/api/activities", json={"message": "parent", "ttl": "1-day"}, token=token)
    path = f"{parent.headers['Location']}/reply"
    key = str(uuid.uuid4())
    answers = [
        api.post(path, json={"message": "only once"}, token=token, **_keyed(key)) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [201] * 3
    assert len({a.get_data() for a in answers}) == 1
    shown = api.get(parent.headers["Location"]).get_json()
    assert shown["activity"]["replies_count"] == 1
    assert [r["message"] for r in shown["replies"]] == ["only once"]


def test_a_keyed_reply_retried_after_its_crud_expired_or_went_is_answered_as_the_first(
    api, mint, seeded_db: str
) -> None:
    # The retry of a stored reply was a 404 once its crud had expired, or was purged:
    # the key's answer was never looked at (a keyed create is replayed however its crud
    # has fared since).
    token = mint("bayko")
    parent = api.post("/api/activities", json={"message": "parent", "ttl": "1-hour"}, token=token)
    parent_uuid = parent.headers["Location"].rsplit("/", 1)[1]
    path = f"{parent.headers['Location']}/reply"
    key, reply = str(uuid.uuid4()), {"message": "stored before the crud went"}
    first = api.post(path, json=reply, token=token, **_keyed(key))
    assert first.status_code == 201
    with psycopg.connect(seeded_db) as conn:
        conn.execute(
            "UPDATE activities SET created_at = now() - interval '2 hour',"
            " expires_at = now() - interval '1 hour' WHERE %s IN (uuid, reply_to_activity_uuid)",
            [parent_uuid],
        )
    for gone in (False, True):
        if gone:
            with psycopg.connect(seeded_db) as conn:
                conn.execute("DELETE FROM activities WHERE uuid = %s", [parent_uuid])
        again = api.post(path, json=reply, token=token, **_keyed(key))
        assert again.status_code == 201, (gone, again.get_json())
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.get_data() == first.get_data()
        # The key with another request is refused as anywhere; no key is a plain 404.
        other = api.post(path, json={"message": "another"}, token=token, **_keyed(key))
        assert other.status_code == 422, (gone, other.get_json())
        assert other.get_json()["error"] == "idempotency_key_reused"
        assert api.post(path, json=reply, token=token).status_code == 404
    # A key never used, to a crud that is gone: a 404 that keeps nothing, each time.
    for _ in range(2):
        missing = api.post(path, json=reply, token=token, **_keyed(str(uuid.uuid4())))
        assert missing.status_code == 404


def test_a_key_is_the_callers_own(api, mint, seeded_db: str) -> None:
    key = str(uuid.uuid4())
    for handle in ("bayko", "andrewbrown"):
        sent = api.post("/api/activities", json=CRUD, token=mint(handle), **_keyed(key))
        assert sent.status_code == 201 and "Idempotent-Replayed" not in sent.headers
    assert _count(seeded_db, CRUD["message"]) == 2


def test_a_key_sent_with_another_request_is_a_422_and_stores_nothing(
    api, mint, seeded_db: str
) -> None:
    token, key = mint("bayko"), str(uuid.uuid4())
    first = api.post("/api/activities", json=CRUD, token=token, **_keyed(key))
    assert first.status_code == 201
    before = snapshot(seeded_db)
    for path, body in (
        ("/api/activities", {**CRUD, "message": "another message"}),
        ("/api/activities", {**CRUD, "ttl": "7-days"}),
        (f"{first.headers['Location']}/reply", {"message": CRUD["message"]}),
    ):
        reused = api.post(path, json=body, token=token, **_keyed(key))
        assert reused.status_code == 422, reused.get_data(as_text=True)
        assert reused.get_json()["error"] == "idempotency_key_reused"
    assert snapshot(seeded_db) == before


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there", "a,b", "   ", " a", "a "])
def test_a_key_that_is_not_printable_ascii_is_a_400(api, mint, seeded_db: str, key) -> None:
    # Spaces around it: HTTP servers strip them, so the document refuses them too (it
    # took "   ", which reached the app as "" and got a 400).
    assert re.fullmatch(KEY_SCHEMA["pattern"], key) is None or len(key) > KEY_SCHEMA["maxLength"]
    before = snapshot(seeded_db)
    refused = api.post("/api/activities", json=CRUD, token=mint("bayko"), **_keyed(key))
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "invalid_idempotency_key"
    assert snapshot(seeded_db) == before


def test_the_longest_key_is_kept(api, mint, seeded_db: str) -> None:
    token, key = mint("bayko"), "~ " * 127 + "!"
    assert len(key) == KEY_SCHEMA["maxLength"] and re.fullmatch(KEY_SCHEMA["pattern"], key)
    assert api.post("/api/activities", json=CRUD, token=token, **_keyed(key)).status_code == 201
    again = api.post("/api/activities", json=CRUD, token=token, **_keyed(key))
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _count(seeded_db, CRUD["message"]) == 1


def test_writes_without_a_key_are_stored_each_time(api, mint, seeded_db: str) -> None:
    token = mint("bayko")
    for _ in range(2):  # the first through Flask, the second without it (new_crud.py)
        sent = api.post("/api/activities", json=CRUD, token=token)
        assert sent.status_code == 201 and "Idempotent-Replayed" not in sent.headers
    assert _count(seeded_db, CRUD["message"]) == 2
    with psycopg.connect(seeded_db) as conn:
        assert conn.execute("SELECT count(*) FROM idempotency_keys").fetchone() == (0,)


def test_an_expired_key_is_removed_and_may_be_used_again(api, mint, seeded_db: str) -> None:
    token, key = mint("bayko"), str(uuid.uuid4())
    api.post("/api/activities", json=CRUD, token=token, **_keyed(str(uuid.uuid4())))
    assert api.post("/api/activities", json=CRUD, token=token, **_keyed(key)).status_code == 201
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE idempotency_keys SET created_at = created_at - interval '2 days',"
            " expires_at = expires_at - interval '2 days'"
        )
    again = api.post("/api/activities", json=CRUD, token=token, **_keyed(key))
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert _count(seeded_db, CRUD["message"]) == 3
    with psycopg.connect(seeded_db) as conn:  # both expired rows went; the new one stays
        kept = conn.execute("SELECT key, expires_at > now() FROM idempotency_keys").fetchall()
    assert kept == [(key, True)]


def test_two_attempts_at_once_with_one_key_store_one_row(app, mint, seeded_db: str) -> None:
    """The first attempt waits on a lock (here, the author's row, held by another
    transaction), its client gives up and retries: both wait, then one stores the crud
    and the other answers with it."""
    token, key = mint("bayko"), str(uuid.uuid4())
    answers: list = []

    def post() -> None:
        answers.append(
            app.test_client().post(
                "/api/activities",
                json=CRUD,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            )
        )

    # The author's uuid is looked up (and kept) first, outside the lock.
    assert app.test_client().post(
        "/api/activities", json={"message": "warm", "ttl": "1-day"},
        headers={"Authorization": f"Bearer {token}"},
    ).status_code == 201  # fmt: skip
    with psycopg.connect(seeded_db) as holder:
        holder.execute("SELECT FROM users WHERE handle = 'bayko' FOR UPDATE")
        threads = [threading.Thread(target=post) for _ in range(2)]
        for thread in threads:
            thread.start()
        _wait_for_waiters(seeded_db, 2)
        holder.commit()
    for thread in threads:
        thread.join(30)
    assert sorted(a.status_code for a in answers) == [201, 201]
    assert answers[0].get_data() == answers[1].get_data()
    replayed = sorted(a.headers.get("Idempotent-Replayed", "") for a in answers)
    assert replayed == ["", "true"]
    assert _count(seeded_db, CRUD["message"]) == 1


def _wait_for_waiters(url: str, count: int) -> None:
    """Until `count` sessions of the database wait on a lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(300):
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            if waiting >= count:
                return
            time.sleep(0.05)
    raise AssertionError(f"{count} sessions never waited on the lock")
