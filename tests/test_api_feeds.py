"""The read endpoints over the real database: feeds, paging, one crud, health, docs."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import replace
from typing import Any

import psycopg
import yaml
from api_support import snapshot
from flask import Flask
from helpers import ACTIVITY_COLUMNS
from openapi_spec_validator import validate

from cruddur.api import OPENAPI, create_app
from cruddur.api.activities import FirstHomePage
from cruddur.config import PoolSettings, Settings
from cruddur.db import Db
from cruddur.telemetry.requests import ROUTE_KEY, RememberedRequest
from cruddur.urls import parse

# A crud as the API gives it: its columns, with its author's name and handle in place of
# the author's uuid.
ACTIVITY_KEYS = ACTIVITY_COLUMNS - {"user_uuid"} | {"display_name", "handle"}
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


def _unexpired(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT uuid::text FROM activities WHERE expires_at > now()"
            " ORDER BY created_at DESC, uuid DESC"
        ).fetchall()
    return [row[0] for row in rows]


def _add_cruds(url: str, count: int, handle: str = "bayko", *, expired: bool = False) -> None:
    # Some share a created_at, so the uuid half of the cursor matters.
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO activities (user_uuid, message, created_at, expires_at)"
            " SELECT u.uuid, 'crud ' || n,"
            "        now() - (n / 3) * interval '1 minute' - %(age)s * interval '1 hour',"
            "        CASE WHEN %(expired)s THEN now() - interval '1 second'"
            "             ELSE now() + interval '1 day' END"
            " FROM users u, generate_series(1, %(count)s) n WHERE u.handle = %(handle)s",
            {"count": count, "handle": handle, "expired": expired, "age": 2 if expired else 0},
        )


def test_home_is_newest_first_without_expired_cruds(api, seeded_db: str) -> None:
    response = api.get("/api/activities/home")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    feed = response.get_json()
    assert [item["uuid"] for item in feed] == _unexpired(seeded_db)
    assert "Gone already: this crud expired yesterday." not in {item["message"] for item in feed}
    assert all(set(item) == ACTIVITY_KEYS for item in feed)
    assert all(ISO_WITH_OFFSET.match(item["created_at"]) for item in feed)
    assert "Link" not in response.headers  # everything fits on one page


def test_keyset_pages_visit_every_crud_once(api, seeded_db: str) -> None:
    _add_cruds(seeded_db, 23)
    _add_cruds(seeded_db, 5, expired=True)
    seen: list[str] = []
    path = "/api/activities/home?limit=4"
    pages = 0
    while path:
        response = api.get(path)
        assert response.status_code == 200
        page = response.get_json()
        assert 1 <= len(page) <= 4
        seen += [item["uuid"] for item in page]
        pages += 1
        link = response.headers.get("Link")
        if link is None:
            break
        match = re.fullmatch(r'<(/api/activities/home\?limit=4&before=[^>]+)>; rel="next"', link)
        assert match, link
        assert response.headers["X-Next-Cursor"] in link
        path = match.group(1)
    assert seen == _unexpired(seeded_db)
    assert pages == -(-len(seen) // 4)


def test_a_full_last_page_has_no_next_link(api, seeded_db: str) -> None:
    count = len(_unexpired(seeded_db))
    response = api.get(f"/api/activities/home?limit={count}")
    assert len(response.get_json()) == count
    assert "Link" not in response.headers


def test_limit_defaults_to_20_and_stops_at_100(api, seeded_db: str) -> None:
    _add_cruds(seeded_db, 120)
    assert len(api.get("/api/activities/home").get_json()) == 20
    assert len(api.get("/api/activities/home?limit=100").get_json()) == 100
    for bad in ("0", "101", "-1", "ten", "1e3", "", "%C2%B2", "%EF%BC%95"):  # ², fullwidth 5
        response = api.get(f"/api/activities/home?limit={bad}")
        assert response.status_code == 400, bad
        assert response.get_json()["error"] == "invalid_limit"


def test_a_limit_of_thousands_of_digits_is_read_not_a_500(api, seeded_db: str) -> None:
    # int() refuses over 4,300 digits; leading zeros still count as "05" does.
    home = api.get(f"/api/activities/home?limit={'0' * 5000}2")
    assert home.status_code == 200
    assert len(home.get_json()) == 2
    parent = _seeded_crud_with_replies(seeded_db)
    for path in ("home", "@andrewbrown", parent):
        path = f"/api/activities/{path}"
        response = api.get(f"{path}?limit={'1' * 5000}")
        assert response.status_code == 400, path
        assert response.get_json()["error"] == "invalid_limit"


def test_malformed_cursors_are_400(api) -> None:
    past_the_server = ("253402300800000000", "-62135596800000001", "999999999999999999")
    for bad in (
        "x", "123", "abc_def", f"1_{'z' * 32}", f"-99999999999999999_{uuid.uuid4()}",
        *(f"{micros}_{uuid.uuid4()}" for micros in past_the_server),  # after 9999, before 1
        f"1000000000000000000_{uuid.uuid4()}",  # 19 digits
    ):  # fmt: skip
        response = api.get(f"/api/activities/home?before={bad}")
        assert response.status_code == 400, bad
        assert response.get_json()["error"] == "invalid_before"


def _walk(api, path: str) -> list[str]:
    """The uuids of every page from `path` on, following each page's Link."""
    seen: list[str] = []
    while path:
        response = api.get(path)
        assert response.status_code == 200, (path, response.get_data(as_text=True))
        seen += [item["uuid"] for item in response.get_json()]
        link = response.headers.get("Link")
        path = link[1 : link.index(">")] if link else ""
    return seen


# Times psql or an import may give a crud, far from now, to the first and last the schema
# keeps (activities_times_in_range: a day inside years 1 to 9999, the server's).
FAR_TIMES = ("9999-12-30 23:59:59.999998+00", "2300-01-01+00", "1600-01-01+00", "0001-01-02+00")


def test_cruds_dated_far_from_now_page_on_like_any_other(api, seeded_db: str) -> None:
    # A crud dated after 2286 (or before 1653) gave a cursor of 17 digits, which the next
    # page refused (400 invalid_before): every client stopped there.
    with psycopg.connect(seeded_db) as conn:
        for n, created_at in enumerate(FAR_TIMES):
            conn.execute(
                "INSERT INTO activities (uuid, user_uuid, message, created_at, expires_at)"
                " VALUES (%s, (SELECT uuid FROM users WHERE handle = 'londo'), 'far', %s,"
                " '9999-12-30 23:59:59.999999+00')",
                [f"bbbbbbbb-0000-4000-8000-00000000000{n}", created_at],
            )
    assert _walk(api, "/api/activities/home?limit=1") == _unexpired(seeded_db)
    far = [u for u in _unexpired(seeded_db) if u.startswith("bbbbbbbb")]
    londos = _walk(api, "/api/activities/@londo?limit=1")
    assert [u for u in londos if u.startswith("bbbbbbbb")] == far
    assert len(set(londos)) == len(londos)


def test_a_time_the_server_cannot_read_back_is_its_500_not_the_clients_422(
    api, seeded_db: str, caplog
) -> None:
    # A database the migrations keeping a crud's times finite and within years 1 to 9999
    # have not reached: `infinity` in expires_at, which psycopg cannot load (the page's
    # earliest expiry). It was a 422, "the database refused a value in the request", to a
    # GET that sent none.
    with psycopg.connect(seeded_db) as conn:
        conn.execute(
            "ALTER TABLE activities DROP CONSTRAINT IF EXISTS activities_times_finite,"
            " DROP CONSTRAINT IF EXISTS activities_times_in_range"
        )
        conn.execute("UPDATE activities SET expires_at = 'infinity' WHERE expires_at > now()")
    for path in ("/api/activities/home", "/api/activities/home?limit=100"):  # kept, or not
        with caplog.at_level(logging.ERROR, logger="cruddur.api"):
            response = api.client.get(path)
        assert response.status_code == 500, path
        body = response.get_json()
        assert body["error"] == "internal_error"
        assert body["request_id"] == response.headers["X-Request-Id"]
        assert "Traceback" not in response.get_data(as_text=True)
        assert any(body["request_id"] in record.getMessage() for record in caplog.records)


def test_user_feed_holds_only_their_cruds(api, seeded_db: str) -> None:
    _add_cruds(seeded_db, 7, handle="londo")
    response = api.get("/api/activities/@londo?limit=5")
    assert response.status_code == 200
    first = response.get_json()
    assert len(first) == 5 and {item["handle"] for item in first} == {"londo"}
    rest = api.get(f"/api/activities/@londo?limit=5&before={response.headers['X-Next-Cursor']}")
    assert {item["handle"] for item in rest.get_json()} == {"londo"}
    with psycopg.connect(seeded_db) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM activities a JOIN users u ON u.uuid = a.user_uuid"
            " WHERE u.handle = 'londo' AND a.expires_at > now()"
        ).fetchone()
    assert len(first) + len(rest.get_json()) == count


def test_a_users_feed_is_found_by_its_handle_in_any_case(api) -> None:
    # `/@AndrewBrown` found nobody, while no one else could have that handle either.
    exact = api.get("/api/activities/@andrewbrown")
    for spelled in ("AndrewBrown", "ANDREWBROWN"):
        response = api.get(f"/api/activities/@{spelled}")
        assert response.status_code == 200, spelled
        assert response.get_json() == exact.get_json()  # the handle as the user chose it
    assert {item["handle"] for item in exact.get_json()} == {"andrewbrown"}


def test_user_feed_of_unknown_or_impossible_handles_is_404(api) -> None:
    # A NUL cannot even reach PostgreSQL (it refused it: a 422 before); nor can "" (the
    # crud route took it: a 400 "invalid uuid").
    for handle in ("nobody", "x" * 5000, "andrewbrown' OR '1'='1", "a%00b", "", "a b"):
        response = api.get(f"/api/activities/@{handle}")
        assert response.status_code == 404, handle
        assert response.get_json()["error"] == "user_not_found"


def test_a_user_with_no_cruds_has_an_empty_feed(api, seeded_db: str) -> None:
    with psycopg.connect(seeded_db) as conn:
        conn.execute(
            "INSERT INTO users (display_name, handle, email, cognito_user_id)"
            " VALUES ('Quiet', 'quiet', 'q@example.com', 'MOCK-quiet')"
        )
    response = api.get("/api/activities/@quiet")
    assert response.status_code == 200 and response.get_json() == []


def test_one_crud_comes_with_its_replies_oldest_first(api, seeded_db: str) -> None:
    with psycopg.connect(seeded_db) as conn:
        (parent,) = conn.execute(
            "SELECT uuid::text FROM activities WHERE replies_count = 2"
        ).fetchone()
    response = api.get(f"/api/activities/{parent}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["activity"]["uuid"] == parent
    replies = body["replies"]
    assert len(replies) == 2
    assert [r["created_at"] for r in replies] == sorted(r["created_at"] for r in replies)
    assert {r["reply_to_activity_uuid"] for r in replies} == {parent}


def test_a_reply_that_has_expired_is_left_out_under_a_live_crud(api, seeded_db: str) -> None:
    # Replies expire with their parent when made through the API, but imported rows (and
    # a reply whose time was cut short) can expire first: show.sql leaves them out.
    parent = _seeded_crud_with_replies(seeded_db)
    with psycopg.connect(seeded_db) as conn:
        conn.execute(
            "INSERT INTO activities"
            " (user_uuid, message, reply_to_activity_uuid, created_at, expires_at)"
            " SELECT user_uuid, 'an expired reply', uuid,"
            "        current_timestamp - interval '2 days', current_timestamp - interval '1 day'"
            " FROM activities WHERE uuid = %s",
            [parent],
        )
    body = api.get(f"/api/activities/{parent}").get_json()
    assert len(body["replies"]) == 2
    assert "an expired reply" not in {reply["message"] for reply in body["replies"]}


def _seeded_crud_with_replies(url: str) -> str:
    with psycopg.connect(url) as conn:
        (parent,) = conn.execute(
            "SELECT uuid::text FROM activities WHERE replies_count = 2"
        ).fetchone()
    return parent


def _add_replies(url: str, parent: str, count: int) -> list[str]:
    """`count` replies in one statement (one created_at: the uuid breaks the tie); returns
    all the parent's unexpired replies' uuids, oldest first."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO activities (user_uuid, message, expires_at, reply_to_activity_uuid)"
            " SELECT user_uuid, 'reply ' || n, expires_at, uuid"
            " FROM activities, generate_series(1, %s) AS n WHERE uuid = %s",
            (count, parent),
        )
        rows = conn.execute(
            "SELECT uuid::text FROM activities WHERE reply_to_activity_uuid = %s"
            " AND expires_at > now() ORDER BY created_at, uuid",
            (parent,),
        ).fetchall()
    return [uuid for (uuid,) in rows]


def test_every_reply_is_reachable_page_by_page(api, seeded_db: str) -> None:
    parent = _seeded_crud_with_replies(seeded_db)
    expected = _add_replies(seeded_db, parent, 3)
    assert len(expected) == 5
    seen: list[str] = []
    path = f"/api/activities/{parent}?limit=2"
    pages = 0
    while path:
        response = api.get(path)
        assert response.status_code == 200
        body = response.get_json()
        assert body["activity"]["uuid"] == parent
        seen += [reply["uuid"] for reply in body["replies"]]
        pages += 1
        link = response.headers.get("Link")
        if link is None:
            break
        next_page = rf"/api/activities/{parent}\?limit=2&after=[^>]+"
        match = re.fullmatch(rf'<({next_page})>; rel="next"', link)
        assert match, link
        assert response.headers["X-Next-Cursor"] in link
        path = match.group(1)
    assert seen == expected and pages == 3


def test_replies_default_to_100_a_page_and_check_their_parameters(api, seeded_db: str) -> None:
    parent = _seeded_crud_with_replies(seeded_db)
    expected = _add_replies(seeded_db, parent, 101)
    first = api.get(f"/api/activities/{parent}")
    assert [r["uuid"] for r in first.get_json()["replies"]] == expected[:100]
    rest = api.get(f"/api/activities/{parent}?after={first.headers['X-Next-Cursor']}")
    assert [r["uuid"] for r in rest.get_json()["replies"]] == expected[100:]
    assert "Link" not in rest.headers
    for query, error in [("limit=0", "invalid_limit"), ("limit=101", "invalid_limit"),
                         ("after=x", "invalid_after"), ("after=1_2", "invalid_after")]:  # fmt: skip
        response = api.get(f"/api/activities/{parent}?{query}")
        assert response.status_code == 400, query
        assert response.get_json()["error"] == error


def test_unknown_expired_and_malformed_cruds(api, seeded_db: str) -> None:
    with psycopg.connect(seeded_db) as conn:
        (expired,) = conn.execute(
            "SELECT uuid::text FROM activities WHERE expires_at <= now()"
        ).fetchone()
    assert api.get(f"/api/activities/{uuid.uuid4()}").status_code == 404
    assert api.get(f"/api/activities/{expired}").status_code == 404
    for bad in ("not-a-uuid", "1", "' OR 1=1 --", "0" * 33):
        response = api.get(f"/api/activities/{bad}")
        assert response.status_code == 400, bad
        assert response.get_json()["error"] == "invalid_activity_uuid"


def test_health_reports_the_pool(api) -> None:
    response = api.get("/api/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["database"]["reachable"] is True
    assert body["database"]["pool"]["max_size"] >= 1


def test_the_api_reaches_its_database_the_way_this_run_says(
    api, app, seeded_db: str, api_route
) -> None:
    # CRUDDUR_TEST_POOLER=pgbouncer (bin/test's second pass) must really put PgBouncer
    # between the API and the database, or that pass proves nothing.
    assert api.get("/api/activities/home").status_code == 200
    db = app.extensions["cruddur.db"].get()
    port = int(parse(db.conninfo)["port"])
    if api_route.bouncer is None:
        assert port == int(parse(seeded_db)["port"])
        assert "plan_cache_mode" in db.conninfo  # session options: no pooler in between
    else:
        assert port == api_route.bouncer.port
        assert api_route.logins_to(parse(seeded_db)["dbname"]) >= 1


def test_the_openapi_document_is_served_and_valid(api) -> None:
    response = api.get("/api/openapi.yaml")
    assert response.status_code == 200
    document = yaml.safe_load(response.get_data(as_text=True))
    validate(document)
    assert document == yaml.safe_load(OPENAPI.read_text())
    assert {"/api/activities/home", "/api/activities", "/api/health"} <= set(document["paths"])


def test_cors_admits_the_front_end_only(api) -> None:
    preflight = {
        "Origin": "http://localhost:3000",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type",
    }
    allowed = api.client.options("/api/activities", headers=preflight)
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
    # A page hosted elsewhere sends a write's X-Read-After back on its reads.
    assert "x-read-after" in allowed.headers["Access-Control-Allow-Headers"].lower()
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert int(allowed.headers["Access-Control-Max-Age"]) > 0
    other = api.client.options(
        "/api/activities", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    feed = api.get("/api/activities/home", headers={"Origin": "http://localhost:3000"})
    assert feed.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "Link" in feed.headers["Access-Control-Expose-Headers"]
    assert "X-Read-After" in feed.headers["Access-Control-Expose-Headers"]
    assert "Origin" in feed.headers.getlist("Vary")  # caches must not mix origins' answers
    refused = api.get("/api/activities/home", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 200 and "Access-Control-Allow-Origin" not in refused.headers
    no_origin = api.get("/api/activities/home")  # not a browser's cross-origin request
    assert not [name for name, _ in no_origin.headers.items() if name.startswith("Access-Control")]
    assert "Origin" in no_origin.headers.getlist("Vary")  # a cache keeps the two apart


def test_a_page_on_the_front_ends_origin_may_read_a_writes_location(api, mint) -> None:
    # The 201 names the new crud in Location; a script on another origin reads only the
    # headers the answer exposes.
    origin = {"Origin": "http://localhost:3000"}
    posted = api.post(
        "/api/activities", json={"message": "hi", "ttl": "1-hour"}, token=mint(), headers=origin
    )
    assert posted.status_code == 201 and posted.headers["Location"]
    exposed = [n.strip() for n in posted.headers["Access-Control-Expose-Headers"].split(",")]
    assert "Location" in exposed


def test_a_page_on_the_front_ends_origin_may_send_the_etag_back(api) -> None:
    # ETag is exposed to its scripts; If-None-Match is not a header a page may send
    # without asking, so unless the preflight allows it the browser refuses the request.
    origin = {"Origin": "http://localhost:3000"}
    preflight = {
        **origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-none-match",
    }
    allowed = api.client.options("/api/activities/home", headers=preflight)
    names = allowed.headers["Access-Control-Allow-Headers"].lower().split(",")
    assert "if-none-match" in [name.strip() for name in names]
    feed = api.get("/api/activities/home", headers=origin)
    assert "ETag" in feed.headers["Access-Control-Expose-Headers"]
    again = api.get(
        "/api/activities/home", headers={**origin, "If-None-Match": feed.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


def test_unknown_paths_and_methods_get_the_error_shape(api) -> None:
    missing = api.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"
    wrong = api.open("DELETE", "/api/activities/home")
    assert wrong.status_code == 405 and wrong.get_json()["error"] == "method_not_allowed"


def test_method_names_are_case_sensitive(api, mint, seeded_db) -> None:
    # Flask's routing upper-cases the method: `post` made a crud and `gEt` read the
    # feed (RFC 9110: method names are case-sensitive; `post` is an unknown method).
    before = snapshot(seeded_db)
    for method, path, body in [
        ("post", "/api/activities", {"message": "lower-case post", "ttl": "1-day"}),
        ("gEt", "/api/activities/home", None),
    ]:
        answer = api.client.open(
            path,
            method="POST" if body else "GET",  # the test client upper-cases it
            json=body,
            headers={"Authorization": f"Bearer {mint()}"},
            environ_overrides={"REQUEST_METHOD": method},
        )
        # 501: the answer to a method the server does not know (RFC 9110, 15.6.2).
        assert answer.status_code == 501, (method, answer.get_json())
        assert answer.get_json()["error"] == "not_implemented"
        assert answer.get_json()["request_id"] == answer.headers["X-Request-Id"]
        # The one shape of every error (openapi.yaml's Error): it had no `errors`.
        assert answer.get_json()["errors"] == []
    assert snapshot(seeded_db) == before


def _uncached_app(api_settings: Settings, **kwargs: Any) -> Flask:
    settings = replace(api_settings, serve=replace(api_settings.serve, feed_cache=False))
    return create_app(settings, **kwargs)


def _both_ways(app: Flask, headers: dict[str, str] | None = None) -> tuple[list, list]:
    """GET /api/activities/home as the app answers it, then as Flask's `home` view does
    (FirstHomePage taken out): status, header list, body, the request log's route."""
    edge = app.wsgi_app
    first_page = edge.app
    assert isinstance(first_page, FirstHomePage)
    app.request_class = RememberedRequest  # the route in the environ, as with the log on
    routes: list[str] = []
    edge.observe = lambda environ, status, seconds: routes.append(environ.get(ROUTE_KEY))
    flask_calls = []

    def flask_app(environ: dict, start_response: Any) -> Any:
        flask_calls.append(environ["PATH_INFO"])
        return first_page.app(environ, start_response)

    answers = []
    client = app.test_client()
    sent = {"X-Request-Id": "compare-the-two-paths", **(headers or {})}
    for inner in (FirstHomePage(flask_app, app.extensions), first_page.app):
        edge.app = inner
        try:
            response = client.get("/api/activities/home", headers=sent)
        finally:
            edge.app = first_page
        answers.append(
            (response.status, response.headers.to_wsgi_list(), response.get_data(), routes[-1])
        )
    return answers, flask_calls


def test_the_first_home_page_without_flask_is_the_views_answer(api_settings, seeded_db) -> None:
    app = _uncached_app(api_settings)
    try:
        for extra in (None, {"Origin": "http://localhost:3000"}, {"Origin": "http://evil"}):
            (fast, view), flask_calls = _both_ways(app, extra)
            assert fast == view and fast[0] == "200 OK"
            assert flask_calls == []  # FirstHomePage answered it
        _add_cruds(seeded_db, 25)  # a next page: Link and X-Next-Cursor
        (fast, view), flask_calls = _both_ways(app)
        assert fast == view and "Link" in dict(fast[1]) and flask_calls == []
        etag = dict(fast[1])["ETag"]
        (fast, view), flask_calls = _both_ways(app, {"If-None-Match": f'"x", {etag}'})
        assert fast == view and fast[0] == "304 NOT MODIFIED" and flask_calls == []
        # What it leaves to the app: a read after a write, another page.
        (fast, view), flask_calls = _both_ways(app, {"X-Read-After": "0/0"})
        assert fast == view and len(flask_calls) == 1
    finally:
        app.extensions["cruddur.db"].close()


def test_the_kept_first_home_page_without_flask_is_the_views_answer(
    api_settings, seeded_db
) -> None:
    # The feed cache on, as by default; LISTEN on the database itself (behind CI's
    # transaction pooler, without a listen URL the cache is off).
    app = create_app(replace(api_settings, serve=replace(api_settings.serve, listen_url=seeded_db)))
    try:
        assert app.extensions["cruddur.feed_cache"].enabled
        _add_cruds(seeded_db, 25)
        (fast, view), flask_calls = _both_ways(app)
        assert fast == view and fast[0] == "200 OK" and "Link" in dict(fast[1])
        assert flask_calls == []
        etag = dict(fast[1])["ETag"]
        (fast, view), flask_calls = _both_ways(app, {"If-None-Match": etag})
        assert fast == view and fast[0] == "304 NOT MODIFIED" and flask_calls == []
        (fast, view), flask_calls = _both_ways(app, {"If-None-Match": '"another"'})
        assert fast == view and fast[0] == "200 OK" and flask_calls == []
    finally:
        app.extensions["cruddur.feed_cache"].close()
        app.extensions["cruddur.db"].close()


def test_the_first_home_page_fails_as_the_view_does(api_settings) -> None:
    down = Db("postgresql://postgres:pw@127.0.0.1:1/cruddur", PoolSettings(timeout=1))
    app = _uncached_app(api_settings, database=down)
    (fast, view), flask_calls = _both_ways(app)
    assert fast == view and fast[0] == "503 SERVICE UNAVAILABLE"
    assert b'"database_unavailable"' in fast[2] and len(flask_calls) == 1  # the view's error
