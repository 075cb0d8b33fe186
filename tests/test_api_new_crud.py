"""NewCrud (api/new_crud.py) answers `POST /api/activities` as Flask's `create` view does,
byte for byte and header for header, and writes nothing twice when it hands over."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask

from cruddur.api import MAX_BODY_BYTES, create_app
from cruddur.api.activities import FirstHomePage
from cruddur.api.new_crud import NewCrud
from cruddur.config import PoolSettings, Settings
from cruddur.db import Db
from cruddur.telemetry.requests import ROUTE_KEY, USER_UUID_KEY, RememberedRequest

PATH = "/api/activities"
VALID = {"message": "Both ways", "ttl": "1-day"}


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM activities").fetchone()[0]


class BothWays:
    """Sends one request through NewCrud (and what it hands over to), then through the
    Flask app alone; records what each answered and how often NewCrud handed over."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.edge = app.wsgi_app
        first_page = self.edge.app
        assert isinstance(first_page, FirstHomePage) and isinstance(first_page.app, NewCrud)
        self.flask = first_page.app.app
        app.request_class = RememberedRequest  # the route in the environ, as with the log on
        self.seen: list[tuple[str | None, Any]] = []  # route, user uuid in the request log
        self.edge.observe = lambda environ, status, seconds: self.seen.append(
            (environ.get(ROUTE_KEY), environ.get(USER_UUID_KEY))
        )
        self.handed_over = 0

    def _recording_flask(self, environ: dict, start_response: Any) -> Any:
        self.handed_over += 1
        return self.flask(environ, start_response)

    def send(self, body: bytes, headers: dict[str, str], **environ: str) -> list[tuple]:
        answers = []
        fast = NewCrud(self._recording_flask, self.app.extensions, MAX_BODY_BYTES)
        sent = {"X-Request-Id": "compare-the-two-paths", **headers}
        client = self.app.test_client()
        for inner in (fast, self.flask):
            self.edge.app = inner
            try:
                response = client.post(PATH, data=body, headers=sent, environ_base=environ)
            finally:
                self.edge.app = FirstHomePage(fast, self.app.extensions)
            answers.append(
                (
                    response.status,
                    response.headers.to_wsgi_list(),
                    response.get_data(),
                    *self.seen[-1],
                )
            )
        return answers


@pytest.fixture
def both(api_settings: Settings) -> Iterator[BothWays]:
    app = create_app(api_settings)
    yield BothWays(app)
    app.extensions["cruddur.feed_cache"].close()
    app.extensions["cruddur.db"].close()


def _json(token: str, kind: str = "application/json") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": kind}


def _same_created(fast: tuple, view: tuple) -> None:
    """Two 201s for two new cruds: the same headers but for the new uuid, the same fields."""
    assert fast[0] == view[0] == "201 CREATED"
    names = [name for name, _ in fast[1]]
    assert names == [name for name, _ in view[1]]
    fast_body, view_body = json.loads(fast[2]), json.loads(view[2])
    assert fast_body.keys() == view_body.keys()
    for body, answer in ((fast_body, fast), (view_body, view)):
        assert dict(answer[1])["Location"] == f"{PATH}/{body['uuid']}"
        assert dict(answer[1])["Content-Length"] == str(len(answer[2]))
        assert body["message"] == VALID["message"] and body["handle"] == "andrewbrown"
    assert fast[3:] == view[3:] and fast[3] == PATH and fast[4] is not None


def test_a_valid_crud_from_a_known_caller_is_written_without_flask(
    both: BothWays, mint, seeded_db: str
) -> None:
    token = mint()
    before = _count(seeded_db)
    # The caller's first write: NewCrud has no uuid for them yet, the app looks it up.
    first = both.send(json.dumps(VALID).encode(), _json(token))
    assert both.handed_over == 1
    _same_created(*first)
    for kind in ("application/json", "application/json; charset=utf-8"):
        fast, view = both.send(json.dumps(VALID).encode(), _json(token, kind))
        _same_created(fast, view)
    assert both.handed_over == 1  # the known caller's cruds were all NewCrud's
    assert _count(seeded_db) == before + 6


REFUSED_BODIES = {
    "not JSON": b'{"message": ',
    "not UTF-8": b'{"message": "\xff", "ttl": "1-day"}',
    "too deep": b"[" * 5_000 + b"]" * 5_000,
    "not an object": b'["a crud"]',
    "no message": b'{"ttl": "1-day"}',
    "an unknown ttl": b'{"message": "x", "ttl": "forever"}',
    "too long": json.dumps({"message": "x" * 1025, "ttl": "1-day"}).encode(),
    "a NUL": json.dumps({"message": "a\u0000b", "ttl": "1-day"}).encode(),
    "over the limit": json.dumps({"message": "x" * MAX_BODY_BYTES, "ttl": "1-day"}).encode(),
}


@pytest.mark.parametrize("case", list(REFUSED_BODIES))
def test_a_refused_body_gets_the_views_answer_and_writes_nothing(
    both: BothWays, mint, seeded_db: str, case: str
) -> None:
    token = mint()
    both.send(json.dumps(VALID).encode(), _json(token))  # the caller is known from here
    before = _count(seeded_db)
    fast, view = both.send(REFUSED_BODIES[case], _json(token))
    assert fast == view and fast[0].startswith("4"), fast
    assert _count(seeded_db) == before


def test_refused_callers_and_content_types_get_the_views_answer(
    both: BothWays, mint, seeded_db: str
) -> None:
    token = mint()
    body = json.dumps(VALID).encode()
    both.send(body, _json(token))  # the caller is known from here
    before = _count(seeded_db)
    cases: list[tuple[dict[str, str], dict[str, str]]] = [
        ({"Content-Type": "application/json"}, {}),  # no token
        ({"Authorization": f"Basic {token}", "Content-Type": "application/json"}, {}),
        (_json("not-a-token"), {}),
        (_json(mint(expires_in=-3600)), {}),
        (_json(mint(sub="nobody-has-this-sub")), {}),  # no users row: 403
        (_json(token), {"REMOTE_ADDR": "10.0.0.7"}),  # a dev token from elsewhere
        (_json(token), {"HTTP_X_FORWARDED_FOR": "10.0.0.7"}),  # relayed by a proxy
        (_json(token), {"HTTP_VIA": "1.1 nginx"}),
        (_json(token), {"HTTP_CF_CONNECTING_IP": "10.0.0.7"}),
        (_json(token), {"HTTP_TRUE_CLIENT_IP": "10.0.0.7"}),
        (_json(token), {"HTTP_X_FORWARDED_HOST": "cruddur.example"}),
        (_json(token, "text/plain"), {}),
        # JSON in another charset, or compressed: the view's 415, never read as UTF-8.
        (_json(token, "application/json; charset=iso-8859-1"), {}),
        (_json(token, "application/json; charset=utf-8; charset=latin1"), {}),
        # A charset quoted on one side: the fast path took it as UTF-8 (201, written).
        (_json(token, 'application/json; charset="utf-8'), {}),
        (_json(token, 'application/json; charset=utf-8"'), {}),
        (_json(token, 'application/json; CHARSET = "UTF8'), {}),
        (_json(token, "application/json; charset=utf-16"), {}),
        ({**_json(token), "Content-Encoding": "gzip"}, {}),
        ({**_json(token), "Content-Encoding": ""}, {}),  # the server's `gzip\xff`
        (_json(token, "application/vnd.api+json"), {}),
    ]
    for headers, environ in cases:
        fast, view = both.send(body, headers, **environ)
        assert fast == view and fast[0][0] == "4", (headers, environ, fast)
    assert _count(seeded_db) == before


def test_a_failed_write_is_the_views_error_and_is_not_written_again(
    api_settings: Settings, mint, seeded_db: str
) -> None:
    down = Db("postgresql://postgres:pw@127.0.0.1:1/cruddur", PoolSettings(timeout=1))
    app = create_app(api_settings, database=down)
    both = BothWays(app)
    token = mint()
    # Known to this worker (looked up while the database answered), then the database goes.
    with Db(seeded_db) as db:
        app.extensions["cruddur.authors"].uuid_for(db, "MOCK-andrewbrown")
    try:
        fast, view = both.send(json.dumps(VALID).encode(), _json(token))
    finally:
        app.extensions["cruddur.feed_cache"].close()
        app.extensions["cruddur.db"].close()
    assert fast == view and fast[0] == "503 SERVICE UNAVAILABLE", fast
    assert b'"database_unavailable"' in fast[2]
    assert both.handed_over == 1  # with the failure: the app answered it


def test_a_caller_deleted_since_is_refused_once_without_a_write(
    both: BothWays, mint, seeded_db: str
) -> None:
    token = mint("bayko")
    both.send(json.dumps(VALID).encode(), _json(token))  # bayko is known from here
    with psycopg.connect(seeded_db) as conn:
        conn.execute(
            "DELETE FROM activities USING users"
            " WHERE users.uuid = activities.user_uuid AND users.handle = 'bayko'"
        )
        conn.execute("DELETE FROM users WHERE handle = 'bayko'")
    before = _count(seeded_db)
    fast, view = both.send(json.dumps(VALID).encode(), _json(token))
    assert fast[:3] == view[:3] and fast[0] == "403 FORBIDDEN", fast
    assert _count(seeded_db) == before
