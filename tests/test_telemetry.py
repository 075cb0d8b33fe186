"""Traces, request logs and metrics of `cruddur serve` under granian with 2 workers,
exporting to a real OTLP/HTTP receiver started here (tests/otlp_receiver.py)."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import psycopg
import pytest
import server_support
from conftest import build_template
from helpers import ROOT, finished_within, run
from otlp_receiver import OtlpReceiver, Span
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from replica_support import ReplicaPair
from server_support import free_port, request

from cruddur.serving import WORKERS_KILL_TIMEOUT
from cruddur.urls import with_database

CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"
SERVER, CLIENT = 2, 3  # OTLP span kinds


class Served(server_support.Served):
    """`cruddur serve` with 2 workers of 2 threads; telemetry only as `env` asks."""

    def __init__(self, url: str, home: Path, env: dict[str, str]) -> None:
        # Every feed request reads the database (no worker copy of the first page), so
        # each has its SQL spans; the copy's refills have their own span.
        self.env = {
            "CONNECTION_URL": url, "CRUDDUR_HOME": str(home), "CRUDDUR_FEED_CACHE": "0", **env
        }  # fmt: skip
        super().__init__(
            "--server", "granian", "--workers", "2", "--threads", "2", env=self.env,
            unset=("OTEL_", "PROD_CONNECTION_URL", "CRUDDUR_METRICS_PORT"),
        )  # fmt: skip
        # Both workers up (each logs its start), and the API answering.
        for worker in ("worker-1", "worker-2"):
            assert self.saw(f"Started {worker}", timeout=40), self.output
        self.wait_healthy(timeout=40)

    def request_lines(self) -> list[dict]:
        lines = []
        for line in self.output.splitlines():
            if line.startswith("{"):
                record = json.loads(line)  # every JSON-looking line is one whole object
                if record["logger"] == "cruddur.request":
                    lines.append(record)
        return lines

    def stop(self) -> float:  # type: ignore[override]
        """Seconds it took; more than 30 fails the test."""
        started = time.monotonic()
        super().stop(timeout=30)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def module_db(admin: psycopg.Connection, server_url: str, app_roles) -> Iterator[str]:
    """A migrated and seeded database for this module's servers (what `db setup` makes)."""
    name = f"cruddur_test_{secrets.token_hex(6)}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    build_template(url, app_roles)
    yield url
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as opened:
        yield opened


@pytest.fixture
def own_receiver() -> Iterator[OtlpReceiver]:
    """A receiver for one test's own servers (nothing else exports to it)."""
    with OtlpReceiver() as opened:
        yield opened


@pytest.fixture
def own_server(
    module_db: str, tmp_path: Path, own_receiver: OtlpReceiver
) -> Iterator[Callable[..., Served]]:
    """Starts a server of the test's own, with `env`, exporting to own_receiver unless
    env names another endpoint; any the test has not stopped is stopped after it."""
    started: list[Served] = []

    def start(**env: str) -> Served:
        server = Served(
            module_db, tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": own_receiver.url, **env}
        )
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.stop()


@pytest.fixture(scope="module")
def served(module_db: str, receiver: OtlpReceiver, tmp_path_factory) -> Iterator[Served]:
    """Traces to the receiver (exported every 100 ms) and metrics on a free port."""
    home = tmp_path_factory.mktemp("telemetry")
    server = Served(
        module_db,
        home,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=test-key",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "CRUDDUR_METRICS_PORT": str(free_port()),
        },
    )
    yield server
    server.stop()


def _token(served: Served, handle: str = "andrewbrown") -> str:
    minted = run(CRUDDUR, "dev", "token", "--handle", handle, env={
        "CONNECTION_URL": served.env["CONNECTION_URL"], "CRUDDUR_HOME": served.env["CRUDDUR_HOME"]
    })  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()


def _request_line(served: Served, request_id: str) -> dict:
    """The request's log line, once written (after the answer has gone out)."""
    deadline = time.monotonic() + 5
    while not (lines := [r for r in served.request_lines() if r["request_id"] == request_id]):
        assert time.monotonic() < deadline, f"no log line for {request_id}"
        time.sleep(0.05)
    (line,) = lines
    return line


def _trace(receiver: OtlpReceiver, trace_id: str, names: set[str]) -> dict[str, list[Span]]:
    spans = receiver.wait_for(
        lambda got: (
            names <= {s.name for s in got if s.trace_id == trace_id}
            and any(s.kind == CLIENT and s.trace_id == trace_id for s in got)
        )
    )
    by_name: dict[str, list[Span]] = {}
    for span in spans:
        if span.trace_id == trace_id:
            by_name.setdefault(span.name, []).append(span)
    return by_name


def test_a_feed_request_is_one_trace_that_continues_the_callers(
    served: Served, receiver: OtlpReceiver
) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    status, headers, _ = request(
        f"{served.base}/api/activities/home?limit=2",
        headers={"traceparent": f"00-{trace_id}-{parent_id}-01", "X-Request-Id": "feed-trace-1"},
    )
    assert status == 200
    spans = _trace(receiver, trace_id, {"GET /api/activities/home", "home-activities"})
    (server_span,) = spans["GET /api/activities/home"]
    assert server_span.kind == SERVER and server_span.parent_span_id == parent_id
    assert server_span.service == "backend-flask"
    (use_case,) = spans["home-activities"]
    assert use_case.parent_span_id == server_span.span_id
    assert use_case.attributes["app.page_limit"] == 2
    assert use_case.attributes["app.result_length"] == 2
    assert use_case.attributes["app.has_more"] is True
    statements = [s for group in spans.values() for s in group if s.kind == CLIENT]
    assert statements and all(s.parent_span_id == use_case.span_id for s in statements)
    (feed_sql,) = statements
    text = feed_sql.attributes["db.statement"]
    assert text.startswith("/* activities/home.sql */") and "%(limit)s" in text
    assert feed_sql.attributes["db.system"] == "postgresql"
    # The exporter sent the configured headers (Honeycomb's API key travels this way).
    assert receiver.headers[-1]["x-honeycomb-team"] == "test-key"

    deadline = time.monotonic() + 5
    while not (lines := [r for r in served.request_lines() if r["request_id"] == "feed-trace-1"]):
        assert time.monotonic() < deadline, "no log line for the request"
        time.sleep(0.1)
    (line,) = lines
    assert line["trace_id"] == trace_id and line["span_id"] == server_span.span_id
    assert line["route"] == "/api/activities/home" and line["method"] == "GET"
    assert line["status"] == 200 and line["duration_ms"] > 0
    assert line["level"] == "info" and line["time"].endswith("Z")
    assert headers["x-request-id"] == "feed-trace-1"


def test_the_first_page_traced_without_flask_has_the_flask_instrumentations_spans(
    served: Served, receiver: OtlpReceiver
) -> None:
    # The plain first page is answered without Flask (tracing.Shortcut); with a query it
    # goes through Flask and its instrumentation. The server spans must not tell them apart
    # but by what the query changes.
    traces = {}
    for path in ("/api/activities/home", "/api/activities/home?limit=20"):
        trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
        request_id = f"shortcut-{trace_id[:8]}"
        status, _, body = request(
            f"{served.base}{path}",
            headers={"traceparent": f"00-{trace_id}-{parent_id}-01", "X-Request-Id": request_id},
        )
        assert status == 200
        spans = _trace(receiver, trace_id, {"GET /api/activities/home", "home-activities"})
        traces[path] = (parent_id, request_id, spans, body)
    shapes = []
    for parent_id, request_id, spans, body in traces.values():
        (server_span,) = spans.pop("GET /api/activities/home")
        (use_case,) = spans.pop("home-activities")
        (statement,) = [s for group in spans.values() for s in group]
        assert server_span.kind == SERVER and server_span.parent_span_id == parent_id
        assert use_case.parent_span_id == server_span.span_id
        assert statement.kind == CLIENT and statement.parent_span_id == use_case.span_id
        line = _request_line(served, request_id)
        assert (line["trace_id"], line["span_id"]) == (server_span.trace_id, server_span.span_id)
        varies = {"http.target", "http.url", "url.query", "net.peer.port", "client.port"}
        shapes.append((
            {k: v for k, v in server_span.attributes.items() if k not in varies},
            use_case.attributes, statement.name, statement.attributes, json.loads(body),
        ))  # fmt: skip
    plain, through_flask = shapes
    assert plain[0]["http.route"] == "/api/activities/home"
    assert plain[0]["http.status_code"] == 200
    assert plain == through_flask


def test_a_first_page_whose_read_fails_without_flask_is_one_traced_answer(
    seeded_db: str, api_url: str, tmp_path: Path, own_receiver: OtlpReceiver
) -> None:
    # A read that fails in the shortcut is answered by the app inside the span it started.
    server = Served(
        api_url, tmp_path,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": own_receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )  # fmt: skip
    try:
        with psycopg.connect(seeded_db, autocommit=True) as owner:
            owner.execute("ALTER TABLE activities RENAME TO activities_gone")
        trace_id = secrets.token_hex(16)
        status, _, body = request(
            f"{server.base}/api/activities/home",
            headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
                     "X-Request-Id": "failed-shortcut"},
        )  # fmt: skip
        assert status == 503 and "Traceback" not in body.decode()  # the schema is not ready
        spans = _trace(own_receiver, trace_id, {"GET /api/activities/home", "home-activities"})
        (server_span,) = spans["GET /api/activities/home"]
        (use_case,) = spans["home-activities"]
        assert sum(s.kind == SERVER for group in spans.values() for s in group) == 1
        assert server_span.attributes["http.status_code"] == status
        assert use_case.parent_span_id == server_span.span_id and use_case.status_code == 2
        line = _request_line(server, "failed-shortcut")
        assert line["trace_id"] == trace_id and line["status"] == status
    finally:
        server.stop()


def test_a_reused_idempotency_key_is_not_exported(
    served: Served, receiver: OtlpReceiver, module_db: str
) -> None:
    # A review: the 422's exception, recorded on the use-case span, carried the key's
    # value (its message, the status, the stack trace). (A user of its own: a worker that
    # knows the seed users' uuids makes no lookup for them, which other tests count.)
    with psycopg.connect(module_db) as conn:
        conn.execute(
            "INSERT INTO users (display_name, handle, email, cognito_user_id) VALUES"
            " ('Idem Key', 'idemkey', 'idem@example.com', 'MOCK-idemkey') ON CONFLICT DO NOTHING"
        )
    token, key = _token(served, "idemkey"), f"idem-SECRETKEY-{secrets.token_hex(4)}"
    trace_id = secrets.token_hex(16)
    for n, message in enumerate(("first", "second")):
        status = request(
            f"{served.base}/api/activities",
            data=json.dumps({"message": message, "ttl": "1-hour"}).encode(),
            headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                "Idempotency-Key": key,
                "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
            },
            method="POST",
        )[0]  # fmt: skip
        assert status == (201, 422)[n]
    receiver.wait_for(
        lambda got: sum(s.trace_id == trace_id and s.name == "create-activity" for s in got) == 2
    )
    assert not any(key.encode() in body for body in receiver.bodies)


def test_a_write_is_traced_with_its_author_and_logged_without_secrets(
    served: Served, receiver: OtlpReceiver, module_db: str
) -> None:
    token = _token(served)
    message = f"secret words {secrets.token_hex(4)}"
    trace_id = secrets.token_hex(16)
    status, headers, body = request(
        f"{served.base}/api/activities",
        data=json.dumps({"message": message, "ttl": "1-hour"}).encode(),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
        },
        method="POST",
    )
    assert status == 201, body
    with psycopg.connect(module_db) as conn:
        (author,) = conn.execute(
            "SELECT uuid::text FROM users WHERE handle = 'andrewbrown'"
        ).fetchone()
    spans = _trace(receiver, trace_id, {"POST /api/activities", "create-activity"})
    (create,) = spans["create-activity"]
    assert create.attributes["app.author_uuid"] == author
    statements = [s for group in spans.values() for s in group if s.kind == CLIENT]
    assert len(statements) == 2  # who the token's user is, then the insert
    everything = json.dumps([s.attributes for group in spans.values() for s in group])
    assert message not in everything and token not in everything  # values are not exported

    request_id = headers["x-request-id"]
    deadline = time.monotonic() + 5
    while not (lines := [r for r in served.request_lines() if r["request_id"] == request_id]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert lines[0]["user_uuid"] == author and lines[0]["route"] == "/api/activities"
    output = served.output
    assert message not in output and token not in output and "password" not in output.lower()


def test_a_query_token_and_an_unmatched_path_stay_out_of_span_names_and_attributes(
    served: Served, receiver: OtlpReceiver
) -> None:
    feed_trace, missing_trace = secrets.token_hex(16), secrets.token_hex(16)
    secret = f"tok{secrets.token_hex(8)}"
    status, _, _ = request(
        f"{served.base}/api/activities/home?limit=2&access_token={secret}",
        headers={"traceparent": f"00-{feed_trace}-{secrets.token_hex(8)}-01"},
    )
    assert status == 200
    junk = f"zz{secrets.token_hex(8)}"
    status, _, _ = request(
        f"{served.base}/api/{junk}?code={secret}",
        headers={"traceparent": f"00-{missing_trace}-{secrets.token_hex(8)}-01"},
    )
    assert status == 404
    # `;` between parameters (old parse_qs, some proxies): the rest was kept as limit's value.
    semi_trace = secrets.token_hex(16)
    status, _, _ = request(
        f"{served.base}/api/activities/home?limit=2;access_token={secret}",
        headers={"traceparent": f"00-{semi_trace}-{secrets.token_hex(8)}-01"},
    )
    assert status == 400
    traces = {feed_trace, missing_trace, semi_trace}
    got = receiver.wait_for(lambda spans: traces <= {s.trace_id for s in spans if s.kind == SERVER})
    (feed,) = [s for s in got if s.trace_id == feed_trace and s.kind == SERVER]
    (missing,) = [s for s in got if s.trace_id == missing_trace and s.kind == SERVER]
    # The parameters the API reads stay, for whoever looks into a slow page.
    assert "limit=2" in json.dumps(feed.attributes)
    assert secret not in json.dumps([s.attributes for s in got]) + " ".join(s.name for s in got)
    # One span name for every path nobody routes, as the logs' and metrics' "unmatched".
    assert missing.name == "GET" and junk not in missing.name


def _traced_request(
    served: Served, receiver: OtlpReceiver, path: str, names: set[str], **kwargs
) -> tuple[int, bytes, dict[str, list[Span]]]:
    """One request under a traceparent of its own: its status, its body, and its trace's
    spans by name once those named (and a SQL statement's) have arrived."""
    trace_id = secrets.token_hex(16)
    headers = {
        "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
        **kwargs.pop("headers", {}),
    }
    status, _, body = request(f"{served.base}{path}", headers=headers, **kwargs)
    return status, body, _trace(receiver, trace_id, names)


def _use_case_span(spans: dict[str, list[Span]], server_name: str, name: str) -> Span:
    """The trace's one `name` span, a child of its one server span, with the request's
    SQL statements under it."""
    (server_span,) = spans[server_name]
    (use_case,) = spans[name]
    assert server_span.kind == SERVER
    assert use_case.parent_span_id == server_span.span_id
    assert use_case.trace_id == server_span.trace_id
    statements = [s for group in spans.values() for s in group if s.kind == CLIENT]
    assert any(s.parent_span_id == use_case.span_id for s in statements)
    return use_case


def _post(served: Served, path: str, token: str, payload: dict, **headers: str):
    return request(
        f"{served.base}{path}", method="POST", data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers},
    )  # fmt: skip


def test_a_users_feed_is_traced_with_its_page_and_whether_the_user_was_found(
    served: Served, receiver: OtlpReceiver
) -> None:
    token = _token(served, "londo")
    for n in range(2):  # at least two of londo's cruds: a page of one has more after it
        crud = {"message": f"feed {n}", "ttl": "1-hour"}
        assert _post(served, "/api/activities", token, crud)[0] == 201
    route = "GET /api/activities/@<handle>"
    names = {route, "user-activities"}

    status, _, spans = _traced_request(served, receiver, "/api/activities/@londo?limit=1", names)
    assert status == 200
    one = _use_case_span(spans, route, "user-activities")
    assert one.attributes == {
        "app.page_limit": 1, "app.result_length": 1, "app.has_more": True, "app.found": True
    }  # fmt: skip

    status, body, spans = _traced_request(
        served, receiver, "/api/activities/@londo?limit=100", names
    )
    assert status == 200
    whole = _use_case_span(spans, route, "user-activities")
    assert whole.attributes == {
        "app.page_limit": 100, "app.result_length": len(json.loads(body)),
        "app.has_more": False, "app.found": True,
    }  # fmt: skip
    assert whole.attributes["app.result_length"] >= 2

    status, _, spans = _traced_request(served, receiver, "/api/activities/@nosuchuser", names)
    assert status == 404
    missing = _use_case_span(spans, route, "user-activities")
    # No page: nothing said of its length or of more after it.
    assert missing.attributes == {"app.page_limit": 20, "app.found": False}


def _user_uuid(url: str, handle: str) -> str:
    with psycopg.connect(url) as conn:
        query = "SELECT uuid::text FROM users WHERE handle = %s"
        return conn.execute(query, (handle,)).fetchone()[0]


def test_a_reply_is_traced_with_its_author_its_parent_and_whether_the_parent_was_found(
    served: Served, receiver: OtlpReceiver, module_db: str
) -> None:
    status, _, body = _post(
        served, "/api/activities", _token(served, "londo"), {"message": "say", "ttl": "1-hour"}
    )
    assert status == 201
    parent = json.loads(body)["uuid"]
    replier, author = _token(served, "bayko"), _user_uuid(module_db, "bayko")
    missing = str(uuid.uuid4())
    route = "POST /api/activities/<activity_uuid>/reply"
    found = {}
    # With an Idempotency-Key too, as the web page sends every reply (a review: the keyed
    # reply's span had no app.parent_uuid).
    for to, answered, key in (
        (parent, 201, None), (missing, 404, None), (parent, 201, str(uuid.uuid4())),
    ):  # fmt: skip
        headers = {"Authorization": f"Bearer {replier}", "Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        status, _, spans = _traced_request(
            served, receiver, f"/api/activities/{to}/reply", {route, "create-reply"},
            method="POST", data=json.dumps({"message": "a reply"}).encode(), headers=headers,
        )  # fmt: skip
        assert status == answered
        reply = _use_case_span(spans, route, "create-reply")
        assert reply.attributes["app.author_uuid"] == author
        assert reply.attributes["app.parent_uuid"] == to
        found[to, key is not None] = reply.attributes["app.found"]
    assert found == {(parent, False): True, (missing, False): False, (parent, True): True}


def test_a_write_that_fails_still_says_whose_it_was(
    served: Served, receiver: OtlpReceiver, module_db: str
) -> None:
    # Its attributes were set only once it had succeeded: a failed write's span, the one
    # an operator looks at, had none.
    with psycopg.connect(module_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.message LIKE 'BOOM%' THEN RAISE EXCEPTION 'boom'; END IF;"
            " RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON activities FOR EACH ROW EXECUTE FUNCTION boom()"
        )
    try:
        token, author = _token(served, "bayko"), _user_uuid(module_db, "bayko")
        parent = json.loads(
            _post(served, "/api/activities", token, {"message": "to fail under", "ttl": "1-hour"})[
                2
            ]
        )["uuid"]
        for path, name, payload, key in (
            ("/api/activities", "create-activity", {"message": "BOOM", "ttl": "1-hour"}, None),
            ("/api/activities", "create-activity", {"message": "BOOM", "ttl": "1-hour"}, "k1"),
            (f"/api/activities/{parent}/reply", "create-reply", {"message": "BOOM"}, None),
            (f"/api/activities/{parent}/reply", "create-reply", {"message": "BOOM"}, "k2"),
        ):
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            if key is not None:
                headers["Idempotency-Key"] = f"{key}-{secrets.token_hex(4)}"
            status, _, spans = _traced_request(
                served, receiver, path, {name}, method="POST",
                data=json.dumps(payload).encode(), headers=headers,
            )  # fmt: skip
            assert status == 500
            (failed,) = spans[name]
            assert failed.status_code == 2  # ERROR
            assert failed.attributes["app.author_uuid"] == author, (path, key)
            if name == "create-reply":
                assert failed.attributes["app.parent_uuid"] == parent
    finally:
        with psycopg.connect(module_db, autocommit=True) as conn:
            conn.execute("DROP TRIGGER boom ON activities")
            conn.execute("DROP FUNCTION boom()")


def test_a_shown_crud_is_traced_with_its_replies_page_and_whether_it_was_found(
    served: Served, receiver: OtlpReceiver
) -> None:
    status, _, body = _post(
        served, "/api/activities", _token(served, "londo"), {"message": "shown", "ttl": "1-hour"}
    )
    assert status == 201
    shown = json.loads(body)["uuid"]
    replier = _token(served, "bayko")
    for n in range(3):  # not 2: the body is an object of 2 keys, activity and replies
        reply = {"message": f"r{n}"}
        assert _post(served, f"/api/activities/{shown}/reply", replier, reply)[0] == 201
    route = "GET /api/activities/<activity_uuid>"
    names = {route, "show-activity"}
    missing = str(uuid.uuid4())
    for path, answered, attributes in (
        (f"{shown}?limit=2", 200, {"app.page_limit": 2, "app.result_length": 2,
                                   "app.has_more": True, "app.found": True}),
        (shown, 200, {"app.page_limit": 100, "app.result_length": 3,
                      "app.has_more": False, "app.found": True}),
        (missing, 404, {"app.page_limit": 100, "app.found": False}),
    ):  # fmt: skip
        status, body, spans = _traced_request(served, receiver, f"/api/activities/{path}", names)
        assert status == answered
        if status == 200:
            assert len(json.loads(body)["replies"]) == attributes["app.result_length"]
        show = _use_case_span(spans, route, "show-activity")
        activity = path.split("?")[0]
        assert show.attributes == {"app.activity_uuid": activity, **attributes}


def test_no_sql_comment_per_request_in_the_spans_or_in_what_postgresql_ran(
    served: Served, receiver: OtlpReceiver, module_db: str
) -> None:
    # sqlcommenter appends /*traceparent='…',…*/ to each statement: a text per request,
    # which defeats prepared statements. The one comment allowed is the query's fixed name.
    # A write: its INSERT is a connection's last statement (autocommit), short enough for
    # pg_stat_activity to hold whole (the feeds' are cut at track_activity_query_size).
    token, named = _token(served, "londo"), "/* activities/create.sql */ "
    texts = []
    for n in range(2):
        status, _, spans = _traced_request(
            served, receiver, "/api/activities", {"POST /api/activities", "create-activity"},
            method="POST", data=json.dumps({"message": f"plain {n}", "ttl": "1-hour"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )  # fmt: skip
        assert status == 201
        statements = [s for group in spans.values() for s in group if s.kind == CLIENT]
        (insert,) = [s for s in statements if s.attributes["db.statement"].startswith(named)]
        texts.append(insert.attributes["db.statement"])
    assert texts[0] == texts[1]  # the same text whatever the trace
    assert "/*" not in texts[0][len(named) :] and "traceparent" not in texts[0]
    # What the server ran: each backend's last statement stays in pg_stat_activity.
    with psycopg.connect(module_db, autocommit=True) as conn:
        (kept,) = conn.execute(  # in bytes
            "SELECT setting::int FROM pg_settings WHERE name = 'track_activity_query_size'"
        ).fetchone()
        ran = [row[0] for row in conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'cruddur-api' AND starts_with(query, %s)", (named,),
        )]  # fmt: skip
    assert ran, "no API connection's last statement was the insert"
    for text in ran:
        assert len(text.encode()) < kept - 1, "cut: its end (where the comment goes) unseen"
        assert "/*" not in text[len(named) :] and "traceparent" not in text, text


def test_log_lines_name_the_route_template_not_the_path(served: Served) -> None:
    assert (
        request(f"{served.base}/api/activities/@bayko", headers={"X-Request-Id": "route-1a"})[0]
        == 200
    )
    assert (
        request(f"{served.base}/api/no/such/path", headers={"X-Request-Id": "route-1b"})[0] == 404
    )
    deadline = time.monotonic() + 5
    while (
        len(lines := [r for r in served.request_lines() if r["request_id"].startswith("route-1")])
        < 2
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    routes = {line["request_id"]: line["route"] for line in lines}
    assert routes == {"route-1a": "/api/activities/@<handle>", "route-1b": "unmatched"}


def _scrape(served: Served) -> dict[tuple[str, tuple], float]:
    port = served.env["CRUDDUR_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_the_requests_of_both_workers(served: Served) -> None:
    before = _scrape(served)
    sent = 60

    def load(count: int, prefix: str) -> None:
        for n in range(count):
            status = request(
                f"{served.base}/api/activities/home", headers={"X-Request-Id": f"{prefix}-{n:04d}"}
            )[0]
            assert status == 200

    threads = [threading.Thread(target=load, args=(sent // 4, f"metrics-{t}")) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in range(3):
        assert request(f"{served.base}/api/activities", data=b"{}", method="POST")[0] == 401
    # A dev token relayed from another machine: refused, and counted as the others are.
    relayed = {"Authorization": f"Bearer {_token(served)}", "X-Forwarded-For": "10.0.0.7"}
    answer = request(f"{served.base}/api/activities", data=b"{}", method="POST", headers=relayed)
    assert answer[0] == 401
    # Relayed with no token at all: missing, not a dev token refused (a review).
    tokenless = {"X-Forwarded-For": "10.0.0.7"}
    answer = request(f"{served.base}/api/activities", data=b"{}", method="POST", headers=tokenless)
    assert answer[0] == 401

    deadline = time.monotonic() + 5
    while (
        len(lines := [r for r in served.request_lines() if r["request_id"].startswith("metrics-")])
        < sent
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert len({line["pid"] for line in lines}) == 2, "both workers should have answered"

    after = _scrape(served)
    home = (
        "cruddur_http_requests_total",
        (("method", "GET"), ("route", "/api/activities/home"), ("status", "200")),
    )
    assert after[home] - before.get(home, 0) == sent
    latency = ("cruddur_http_request_duration_seconds_count", (("route", "/api/activities/home"),))
    assert after[latency] - before.get(latency, 0) == sent
    seconds = ("cruddur_http_request_duration_seconds_sum", (("route", "/api/activities/home"),))
    assert 0 < after[seconds] - before.get(seconds, 0) < sent * 10
    refused = ("cruddur_auth_tokens_refused_total", (("reason", "missing"),))
    assert after[refused] - before.get(refused, 0) == 4
    not_local = ("cruddur_auth_tokens_refused_total", (("reason", "dev_not_local"),))
    assert after[not_local] - before.get(not_local, 0) == 1
    # Each worker's pool holds at least its one connection; the exporter adds them up.
    deadline = time.monotonic() + 5
    while _scrape(served)[("cruddur_db_pool_size", (("pool", "primary"),))] < 2:
        assert time.monotonic() < deadline, _scrape(served)
        time.sleep(0.2)


def test_a_dead_workers_gauges_removed_by_another_scrape_still_give_a_scrape(
    tmp_path: Path,
) -> None:
    # A review: two scrapes at once both removed a killed worker's gauge files, and the
    # second's FileNotFoundError came out of collect(): its scrape a 500, a traceback.
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    from cruddur.telemetry.exporter import LiveWorkersCollector

    dead = tmp_path / "gauge_livesum_999999.db"  # a pid nobody has
    MmapedDict(str(dead)).close()
    collector = LiveWorkersCollector(str(tmp_path))
    remove = os.remove

    def removed_meanwhile(path: str) -> None:
        remove(path)  # the other scrape's
        remove(path)

    with mock.patch.object(multiprocess.os, "remove", removed_meanwhile):
        list(collector.collect())
    assert not dead.exists()


def test_the_pool_gauges_count_the_reader_pool_apart(tmp_path: Path) -> None:
    # Reads went to the replica's pool, which the gauges left out: 40 concurrent user-feed
    # reads showed the primary's pool only, while the replica held connections of its own.
    pair = ReplicaPair(tmp_path / "pair").create()
    server = None
    try:
        server = Served(
            pair.primary_url,
            tmp_path,
            {"READER_CONNECTION_URL": pair.replica_url, "CRUDDUR_METRICS_PORT": str(free_port())},
        )

        def reads(count: int) -> None:
            for _ in range(count):
                assert request(f"{server.base}/api/activities/@andrewbrown")[0] == 200

        def in_postgres(url: str, application: str) -> int:
            with psycopg.connect(url, autocommit=True) as conn:
                query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                return conn.execute(query, (application,)).fetchone()[0]

        deadline = time.monotonic() + 20
        while True:
            threads = [threading.Thread(target=reads, args=(5,)) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            time.sleep(1.5)  # a reading of the pools, every second
            metrics = _scrape(server)
            reader = metrics.get(("cruddur_db_pool_size", (("pool", "reader"),)), 0)
            if reader and reader == in_postgres(pair.replica_url, "cruddur-api-reader"):
                break
            assert time.monotonic() < deadline, (metrics, reader)
        assert metrics[("cruddur_db_pool_size", (("pool", "primary"),))] >= 1
        for gauge in ("cruddur_db_pool_idle", "cruddur_db_pool_waiting"):
            assert (gauge, (("pool", "reader"),)) in metrics
            assert (gauge, (("pool", "primary"),)) in metrics
        assert ("cruddur_db_pool_size", ()) not in metrics  # no series without its pool
    finally:
        if server is not None:
            server.stop()
        pair.remove()


def test_methods_clients_make_up_add_no_series(served: Served) -> None:
    # The method is a client's text: counted under "other", or each made-up one (3,000
    # characters long, if it likes) would be a series kept until the server restarts.
    before = _scrape(served)
    made_up = [f"BOGUS{n}" for n in range(3)] + ["A" * 300]
    for method in made_up:
        request(f"{served.base}/api/activities/home", method=method)
    other = (
        "cruddur_http_requests_total",
        (("method", "other"), ("route", "unmatched"), ("status", "405")),
    )
    deadline = time.monotonic() + 5
    while (after := _scrape(served)).get(other, 0) - before.get(other, 0) < len(made_up):
        assert time.monotonic() < deadline, after.get(other)
        time.sleep(0.2)
    methods = {dict(labels).get("method") for _, labels in after}
    assert not methods & set(made_up)
    assert methods - {None} <= {"GET", "HEAD", "POST", "OPTIONS", "other"}


def test_a_huge_made_up_method_makes_a_short_whole_log_line(served: Served) -> None:
    # 20 kB of method once made a 40 kB line (it is in the message too): past PIPE_BUF,
    # the other worker's lines could land inside it.
    host, port = served.base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(
            b"X" * 20_000 + b" /api/activities/home HTTP/1.1\r\nHost: x\r\n"
            b"X-Request-Id: long-method-1\r\nConnection: close\r\n\r\n"
        )
        assert conn.recv(100).startswith(b"HTTP/1.1 405")
    deadline = time.monotonic() + 5
    while not (lines := [r for r in served.request_lines() if r["request_id"] == "long-method-1"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (line,) = lines
    assert line["method"] == "X" * 24 + "…" and line["message"].startswith("X" * 24 + "… ")
    (raw,) = [text for text in served.output.splitlines() if "long-method-1" in text]
    assert len(raw.encode()) < 1024


# Made importable first (PYTHONPATH): granian's main process then starts its workers by
# spawn, as granian does on Pythons whose default is not fork (3.14: forkserver).
SPAWN_WORKERS = 'import multiprocessing\nmultiprocessing.set_start_method("spawn")\n'


def test_workers_granian_spawns_trace_as_forked_ones_do(
    module_db: str, tmp_path: Path, own_receiver: OtlpReceiver
) -> None:
    # A spawned worker inherits nothing of the main process: its tracing is set up by
    # create_worker_app alone (telemetry.start_process), as in a forked one.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SPAWN_WORKERS)
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    server = Served(
        module_db, tmp_path,
        {"PYTHONPATH": path, "OTEL_EXPORTER_OTLP_ENDPOINT": own_receiver.url,
         "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )  # fmt: skip
    try:
        # Both workers are spawned: fresh interpreters (not a fork of the main process).
        spawned = [
            pid for pid in server.leftovers()
            if b"--multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]  # fmt: skip
        assert len(spawned) == 2, server.output
        traces: dict[str, str] = {}

        def ask(thread: int) -> None:
            for n in range(4):
                trace_id, request_id = secrets.token_hex(16), f"spawned-{thread}-{n:04d}"
                status = request(
                    f"{server.base}/api/activities/home?limit=2",
                    headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
                             "X-Request-Id": request_id},
                )[0]  # fmt: skip
                assert status == 200
                traces[request_id] = trace_id

        threads = [threading.Thread(target=ask, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(traces) == 16
        lines = {request_id: _request_line(server, request_id) for request_id in traces}
        # Each spawned worker answered some, traced: each set its tracing up on its own.
        assert {line["pid"] for line in lines.values()} == set(spawned)
        for request_id, trace_id in traces.items():
            spans = _trace(own_receiver, trace_id, {"GET /api/activities/home", "home-activities"})
            (server_span,) = spans["GET /api/activities/home"]
            (use_case,) = spans["home-activities"]
            assert use_case.parent_span_id == server_span.span_id
            assert server_span.service == "backend-flask"
            assert lines[request_id]["trace_id"] == trace_id
    finally:
        server.stop()
    started = [
        json.loads(line)["pid"] for line in server.output.splitlines()
        if line.startswith("{") and '"traces: on, ' in line
    ]  # fmt: skip
    assert sorted(started) == sorted(spawned)  # set up once in each, by the worker itself


def test_spans_queued_at_a_stop_are_sent_before_the_workers_end(
    own_server, own_receiver: OtlpReceiver
) -> None:
    server = own_server(OTEL_BSP_SCHEDULE_DELAY="600000")
    for _ in range(4):
        assert request(f"{server.base}/api/activities/home")[0] == 200
    assert own_receiver.spans == []  # still queued: the batch goes out every 10 minutes
    server.stop()
    names = [s.name for s in own_receiver.spans]
    assert names.count("home-activities") == 4


def test_nothing_is_traced_without_an_endpoint(
    module_db: str, tmp_path: Path, own_server, own_receiver: OtlpReceiver
) -> None:
    # The SDK's own switch, with an endpoint given: nothing reaches the receiver.
    disabled = own_server(OTEL_SDK_DISABLED="true")
    # No endpoint at all (the service name and sampler alone do not switch it on).
    unset = Served(
        module_db,
        tmp_path,
        {"OTEL_SERVICE_NAME": "backend-flask", "OTEL_TRACES_SAMPLER": "always_on"},
    )
    for server in (disabled, unset):
        assert request(f"{server.base}/api/activities/home")[0] == 200
        server.stop()
        assert "traces: off" in server.output
        assert "traces: on" not in server.output
        lines = server.request_lines()
        assert lines and all("trace_id" not in line for line in lines)
    assert own_receiver.exports == 0


@pytest.mark.parametrize("receiver_state", ["down", "slow"])
def test_a_receiver_down_or_slow_never_slows_or_fails_a_request(
    receiver_state: str, module_db: str, tmp_path: Path
) -> None:
    slow = OtlpReceiver(delay=5.0) if receiver_state == "slow" else None
    endpoint = slow.url if slow else f"http://127.0.0.1:{free_port()}"  # nothing listens
    try:
        server = Served(
            module_db,
            tmp_path,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50",
             "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4", "OTEL_EXPORTER_OTLP_TIMEOUT": "2"},
        )  # fmt: skip
        for _ in range(40):
            started = time.monotonic()
            assert request(f"{server.base}/api/activities/home")[0] == 200
            # A user-facing bound, far above a feed page's few milliseconds.
            assert time.monotonic() - started < 1.0
        # Nor a stop by more than the few seconds given to the last spans (ECS allows 30),
        # and each worker ends on its own, before granian's kill timeout: the flush's wait
        # was that timeout. (Not by granian's "Killing worker" line: it also prints it,
        # now and then, for a worker that ended a moment before it looked, within 1 s.)
        took = server.stop()
        assert took < WORKERS_KILL_TIMEOUT, server.output
    finally:
        if slow:
            slow.close()


def _one_worker(module_db: str, home: Path, *args: str, **env: str) -> server_support.Served:
    """A short-lived `cruddur serve` (`args`: one granian worker unless they say
    otherwise) with `env` and none of this process's telemetry or log settings."""
    full = {"CONNECTION_URL": module_db, "CRUDDUR_HOME": str(home), **env}
    unset = ("OTEL_", "PROD_", "CRUDDUR_METRICS_PORT", "CRUDDUR_LOG_")
    server = server_support.Served(*(args or ("--workers", "1")), env=full, unset=unset)
    server.env = full  # where _token finds the database and the dev key pair
    server.wait_healthy()
    return server


def test_log_level_warning_drops_request_lines_and_keeps_warnings(
    module_db: str, tmp_path: Path
) -> None:
    server = _one_worker(module_db, tmp_path, CRUDDUR_LOG_LEVEL="warning")
    try:
        feed = request(f"{server.base}/api/activities/home", headers={"X-Request-Id": "quiet-feed"})
        assert feed[0] == 200
        bad = {"Authorization": "Bearer not.a.jwt", "X-Request-Id": "quiet-info"}
        assert request(f"{server.base}/api/activities", data=b"{}", headers=bad)[0] == 401
        # A dev token relayed from another machine: refused with a warning.
        relayed = {"Authorization": f"Bearer {_token(server)}", "X-Forwarded-For": "10.0.0.7",
                   "X-Request-Id": "quiet-warn"}  # fmt: skip
        assert request(f"{server.base}/api/activities", data=b"{}", headers=relayed)[0] == 401
    finally:
        server.stop()  # what the worker queued is written as it stops
    records = [json.loads(line) for line in server.output.splitlines() if line.startswith("{")]
    assert not [r for r in records if r["logger"] == "cruddur.request"], server.output
    assert not [r for r in records if r.get("request_id") == "quiet-info"]  # info: dropped
    (warning,) = [r for r in records if r.get("request_id") == "quiet-warn"]
    assert warning["level"] == "warning"
    assert warning["message"] == "request quiet-warn: dev token from 127.0.0.1 refused"


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--workers", "1"), {"CRUDDUR_LOG_FORMAT": "text"}), (("--dev",), {})],
    ids=["CRUDDUR_LOG_FORMAT=text", "serve --dev"],
)
def test_text_log_lines_are_for_people_with_the_method_route_and_status(
    args: tuple[str, ...], env: dict[str, str], module_db: str, tmp_path: Path
) -> None:
    server = _one_worker(module_db, tmp_path, *args, **env)
    try:
        feed = f"{server.base}/api/activities/@andrewbrown"
        assert request(feed, headers={"X-Request-Id": "text-line-1"})[0] == 200
        assert server.saw("request_id=text-line-1", timeout=5), server.output
    finally:
        server.stop()
    lines = server.output.splitlines()
    (line,) = [line for line in lines if "request_id=text-line-1" in line]
    assert " INFO cruddur.request: GET /api/activities/@<handle> 200 " in line, line
    assert not any(line.startswith("{") for line in lines), server.output  # no JSON at all


def test_a_stalled_stdout_never_stops_the_server_answering(module_db: str, tmp_path: Path) -> None:
    # A record logged in a request's thread (here "token refused", one per bad token) was
    # written there: with stdout's reader stalled the write blocked, holding the handler's
    # lock, until no thread was left to answer anyone, /api/health included.
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROD_"))}
    env.update(
        CONNECTION_URL=module_db, CRUDDUR_HOME=str(tmp_path), NO_COLOR="1", PORT=str(port),
        CRUDDUR_METRICS_PORT="",
    )  # fmt: skip
    server = subprocess.Popen(
        [str(CRUDDUR), "serve", "--workers", "1", "--threads", "2"],
        env=env,
        stdout=subprocess.PIPE,  # read by no one until the end: the pipe fills (64 kB)
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if request(f"{base}/api/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "serve did not start"
            time.sleep(0.1)
        bad = {"Authorization": "Bearer not.a.jwt", "Content-Type": "application/json"}
        for n in range(400):  # ~0.5 kB of lines each: far past what the pipe holds
            status = request(f"{base}/api/activities", data=b"{}", headers=bad, method="POST")[0]
            assert status == 401, n
        assert request(f"{base}/api/health")[0] == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output = server.communicate(timeout=30)[0].decode()  # read at last: all written
    refused = [line for line in output.splitlines() if "token refused" in line]
    assert len(refused) == 400  # under the queue's bound: every record, once stdout read


def test_one_sigterm_stops_the_server_while_its_stdout_is_stalled(
    module_db: str, tmp_path: Path
) -> None:
    # A review: with stdout's reader stalled, granian's main process blocked writing its
    # own "Shutting down granian" line, and the workers their last lines: the server
    # ended only when stdout was read again (118 s in one run).
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROD_"))}
    env.update(
        CONNECTION_URL=module_db, CRUDDUR_HOME=str(tmp_path), NO_COLOR="1", PORT=str(port),
        CRUDDUR_METRICS_PORT="",
    )  # fmt: skip
    read_end, write_end = os.pipe()  # read by no one: full after 64 kB
    server = subprocess.Popen(
        [str(CRUDDUR), "serve", "--workers", "2", "--threads", "2"],
        env=env, stdout=write_end, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    os.close(write_end)
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if request(f"http://127.0.0.1:{port}/api/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "serve did not start"
            time.sleep(0.1)
        for _ in range(600):  # ~150 kB of request lines: stdout took some of them
            assert request(f"http://127.0.0.1:{port}/api/health")[0] == 200
        time.sleep(0.5)  # the lines' writers blocked in their writes
        os.killpg(server.pid, signal.SIGTERM)
        # granian kills a worker that has not stopped after WORKERS_KILL_TIMEOUT.
        try:
            server.wait(timeout=WORKERS_KILL_TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            pytest.fail("one SIGTERM did not stop the server: its stalled stdout held it")
        with pytest.raises(ProcessLookupError):
            os.killpg(server.pid, 0)  # no worker left either
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        os.close(read_end)
        server.wait(timeout=30)


QUEUED_AT_EXIT = """
import logging, multiprocessing, multiprocessing.util
from cruddur.config import TelemetrySettings
from cruddur.telemetry import logs

def worker():
    logs.configure(TelemetrySettings.from_env({}), queued=True)
    log = logging.getLogger("cruddur.test")
    # As the spans' last flush logs its exporter's warnings: a finalizer of its own.
    multiprocessing.util.Finalize(None, lambda: log.warning("late record"), exitpriority=100)
    log.warning("early record")

process = multiprocessing.get_context("fork").Process(target=worker)
process.start()
process.join()
"""


def test_records_logged_as_a_worker_stops_are_written(tmp_path: Path) -> None:
    # The queue's writer stopped before the spans' last flush, whose exporter warnings
    # (a receiver down) were queued after it and never written.
    script = tmp_path / "worker.py"
    script.write_text(QUEUED_AT_EXIT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line)["message"] for line in done.stdout.splitlines()]
    assert messages == ["early record", "late record"], done.stdout


def test_an_unexpected_error_logs_its_traceback_as_one_json_record(app, api) -> None:
    from cruddur.telemetry.logs import JsonFormatter

    def broken():
        raise RuntimeError("the disk is on fire")

    app.add_url_rule("/api/broken", "broken", broken)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("cruddur.api")
    logger.addHandler(handler)
    try:
        response = app.test_client().get("/api/broken")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 500
    assert "fire" not in response.get_data(as_text=True)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["request_id"] == response.headers["x-request-id"]
    assert record["level"] == "error" and record["error"] == "RuntimeError: the disk is on fire"
    assert "Traceback (most recent call last)" in record["traceback"]
    assert 'raise RuntimeError("the disk is on fire")' in record["traceback"]


def test_the_request_line_is_the_record_the_json_formatter_would_write() -> None:
    # The line is one f-string (logs._json_line) for speed: it must stay the same object,
    # in the same order, as JsonFormatter makes of a logging record, whatever the strings.
    from cruddur.telemetry.logs import (
        REQUEST_LOGGER,
        JsonFormatter,
        _json_line,
        request_fields,
        request_message,
    )

    line = _json_line(4321)
    created = time.time()
    user = uuid.uuid4()  # as api.auth leaves it
    ids = ("ab" * 16, "cd" * 8)
    for finished in [
        (created, "GET", "/api/activities/home", "200 OK", 0.0031234, "req-1", ids, "u-1"),
        (created, 'GE"T\\\x01', "unmatched", "404 NOT FOUND", 1.5, None, None, None),
        (created, "X" * 100, "unmatched", "405 METHOD NOT ALLOWED", 0.001, "r2", None, None),
        (created + 0.9999, "POST", "/api/é/<x>", "500 INTERNAL SERVER ERROR", 0.0, "r", None, user),
        # The same route again, a second later: its kept text, a new time.
        (
            created + 1.5,
            "GET",
            "/api/activities/home",
            "304 NOT MODIFIED",
            0.0004,
            "req-2",
            ids,
            None,
        ),
    ]:
        at, method, route, status, seconds, request_id, trace, user = finished
        written = line(*finished)
        assert written.endswith("\n") and "\n" not in written[:-1]
        fields = request_fields(method, route, status, seconds, request_id, trace, user)
        message = request_message(method, route, status[:3], seconds)
        record = logging.getLogger(REQUEST_LOGGER).makeRecord(
            REQUEST_LOGGER, logging.INFO, __file__, 1, message, (), None, extra=fields
        )
        record.created, record.process = at, 4321
        expected = json.loads(JsonFormatter().format(record))
        got = json.loads(written)
        assert got == expected and list(got) == list(expected)


def test_any_record_is_one_line_of_valid_utf8_json() -> None:
    from cruddur.telemetry.logs import JsonFormatter

    odd = [
        "a path from argv: /tmp/\udcff\udcfe.sql",  # bytes that were not UTF-8
        "two\nlines\r\nand a tab\t and a NUL \x00",
        "é ✓ \u2028 \U0001f600",
        "x" * 100_000,
    ]
    for text in odd:
        record = logging.makeLogRecord(
            {"name": "cruddur.x", "levelno": logging.INFO, "levelname": "INFO",
             "msg": "%s", "args": (text,), "detail": text}
        )  # fmt: skip
        line = JsonFormatter().format(record)
        assert "\n" not in line and "\r" not in line
        parsed = json.loads(line.encode("utf-8").decode("utf-8"))  # strict both ways
        assert parsed["message"] == text and parsed["detail"] == text


def test_a_record_too_long_for_a_pipe_is_one_write_of_one_cut_line() -> None:
    # Through sys.stdout's buffer a record over PIPE_BUF (a traceback, a message quoting
    # a client) went out in pieces, and the other workers' lines landed between them.
    from cruddur.telemetry.logs import PIPE_BUF, WholeLines

    # 200 frames of 200 functions (a frame repeated is printed once, with a count).
    chain = "".join(f"def f{n}():\n    return f{n + 1}()\n" for n in range(200))
    functions: dict = {}
    exec(chain + "def f200():\n    raise ValueError('the innermost failure')\n", functions)
    try:
        functions["f0"]()
    except ValueError:
        exc_info = sys.exc_info()
    failed = {"name": "x", "levelno": logging.ERROR, "levelname": "ERROR", "request_id": "r-1"}
    records = [
        logging.makeLogRecord({**failed, "msg": message, "exc_info": exc_info})
        for message in ("short", "é\x01" * 9_000)  # escaped and non-ASCII: 6 and 2 bytes
    ]
    records.append(
        logging.makeLogRecord({"name": "x", "levelno": logging.WARNING, "msg": "z" * 20_000})
    )
    reading, writing = os.pipe()
    try:
        handler = WholeLines(writing)
        writes: list[int] = []
        real_write = os.write

        def counted(fd: int, data: bytes) -> int:
            writes.append(len(data))
            return real_write(fd, data)

        with mock.patch.object(os, "write", counted):
            for record in records:
                handler.handle(record)
        output = os.read(reading, 65_536).decode()
    finally:
        os.close(reading)
        os.close(writing)
    assert len(writes) == 3 and max(writes) <= PIPE_BUF
    lines = output.splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["request_id"] == "r-1" and first["message"] == "short"
    for parsed in (first, second):
        # The traceback is cut in its middle: its start and the exception are kept.
        assert parsed["traceback"].startswith("Traceback (most recent call last)")
        assert parsed["traceback"].endswith("ValueError: the innermost failure\n")
        assert "characters cut]" in parsed["traceback"]
    assert second["message"].startswith("é\x01") and "characters cut]" in second["message"]
    assert third["message"].startswith("zzz") and third["message"].endswith("zzz")


@pytest.mark.parametrize("max_bytes", [4095, 1000, 300])
def test_a_text_costly_at_its_ends_and_cheap_in_its_middle_is_cut_to_fit(max_bytes: int) -> None:
    # The cut went by the text's average bytes a character: cheap characters cut from
    # the middle saved less than the note of the cut added, and the same cut was made
    # for ever, the handler's lock held (a client chooses a logged path).
    from cruddur.telemetry.logs import JsonFormatter

    text = "😀" * 500 + "a" * 3000 + "\x00" * 500
    record = logging.makeLogRecord(
        {"name": "x", "levelno": logging.WARNING, "msg": "path %s", "args": (text,),
         "ids": [1, 2], "sizes": {"a": 1}}
    )  # fmt: skip
    (line,), took = finished_within(lambda: JsonFormatter(max_bytes=max_bytes).format(record), 10)
    assert took < 10 and len(line.encode()) <= max_bytes
    parsed = json.loads(line)
    assert "characters cut]" in parsed["message"] and parsed["message"].startswith("path 😀")
    assert parsed["ids"] == [1, 2] and parsed["sizes"] == {"a": 1}  # JSON types kept


def test_a_malformed_tracestate_is_not_echoed_into_the_log() -> None:
    # The propagator warned once a request, quoting the header: 8 kB a line, by anyone.
    code = (
        "import logging, io, sys\n"
        "from cruddur.config import TelemetrySettings\n"
        "from cruddur.telemetry import logs\n"
        "logs.configure(TelemetrySettings.from_env({}))\n"
        "from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator\n"
        "TraceContextTextMapPropagator().extract({'traceparent': '00-' + 'ab' * 16 + '-' +"
        " 'cd' * 8 + '-01', 'tracestate': 'z' * 8100})\n"
        "logging.getLogger('cruddur.x').warning('ours still shows')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "zzzz" not in done.stdout + done.stderr
    assert "ours still shows" in done.stdout


@pytest.mark.parametrize("form", ["json", "text"])
def test_a_logged_database_error_shows_no_value_of_the_refused_row(
    seeded_db: str, form: str
) -> None:
    from cruddur.telemetry.logs import JsonFormatter, TextFormatter

    # An error no handler expects goes to the log with its traceback (errors.py): the
    # DETAIL of a refused row would put the crud's text there. (A review: the text form,
    # `--dev`'s, still did.)
    with psycopg.connect(seeded_db) as conn:
        try:
            conn.execute(
                "INSERT INTO activities (user_uuid, message) VALUES (NULL, 'my secret words')"
            )
        except psycopg.errors.NotNullViolation:
            record = logging.makeLogRecord(
                {"name": "cruddur.api", "levelno": logging.ERROR, "levelname": "ERROR",
                 "msg": "request r failed", "exc_info": sys.exc_info()}
            )  # fmt: skip
    if form == "text":
        text = TextFormatter().format(record)
        assert "secret words" not in text
        assert "NotNullViolation" in text and "Traceback" in text
        assert "DETAIL: (not shown" in text
        return
    line = json.loads(JsonFormatter().format(record))
    assert "secret words" not in json.dumps(line)
    assert "NotNullViolation" in line["error"] and "user_uuid" in line["error"]
    assert "Traceback" in line["traceback"]


def test_latencies_observed_together_fill_the_histogram_as_one_by_one() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    from cruddur.telemetry.metrics import BUCKETS, observe_all

    values = [0.0005, 0.001, 0.0011, 0.003, 0.003, 0.7, 10.0, 42.0, 0.0]
    samples = []
    for together in (False, True):
        registry = CollectorRegistry()
        histogram = Histogram("t", "t", ["route"], buckets=BUCKETS, registry=registry)
        child = histogram.labels("/a")
        if together:
            observe_all(child, values)
        else:
            for value in values:
                child.observe(value)
        samples.append(
            sorted(
                (s.name, tuple(sorted(s.labels.items())), s.value)
                for metric in registry.collect()
                for s in metric.samples
                if not s.name.endswith("_created")
            )
        )
    assert samples[0] == samples[1]
    assert ("t_count", (("route", "/a"),), float(len(values))) in samples[1]


def test_telemetry_settings_come_from_the_standard_variables() -> None:
    from cruddur.config import ConfigError, TelemetrySettings

    assert not TelemetrySettings.from_env({}).traces
    assert not TelemetrySettings.from_env({}).metrics
    on = TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://api.honeycomb.io"})
    assert on.traces and on.log_format == "json" and on.log_level == "info"
    assert TelemetrySettings.from_env(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}
    ).traces
    assert not TelemetrySettings.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}
    ).traces
    for bad in (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"CRUDDUR_LOG_FORMAT": "xml"},
        {"CRUDDUR_LOG_LEVEL": "loud"},
        {"CRUDDUR_METRICS_PORT": "nine"},
    ):
        with pytest.raises(ConfigError):
            TelemetrySettings.from_env(bad)


def test_with_no_propagators_requests_are_traced_as_new_traces(
    own_server, own_receiver: OtlpReceiver
) -> None:
    # A review: OTEL_PROPAGATORS=none (which the settings take) gave opentelemetry no
    # context for a request, and every sampled request, health included, was an empty 500.
    server = own_server(OTEL_PROPAGATORS="none", OTEL_BSP_SCHEDULE_DELAY="100")
    try:
        parent = secrets.token_hex(16)
        caller = {"traceparent": f"00-{parent}-{secrets.token_hex(8)}-00"}  # not sampled
        for path in ("/api/health", "/api/activities/home", "/api/activities/@andrewbrown"):
            status = request(f"{server.base}{path}", headers=caller)[0]
            assert status == 200, (path, server.output)
        spans = own_receiver.wait_for(
            lambda got: any(s.name == "GET /api/activities/@<handle>" for s in got)
        )
        assert parent not in {s.trace_id for s in spans}  # a new trace: no parent read
    finally:
        server.stop()


def test_sampling_follows_the_standard_samplers() -> None:
    from cruddur.telemetry.tracing import Sampling

    parent = "00-" + "ab" * 16 + "-" + "cd" * 8
    sampled, unsampled = {"HTTP_TRACEPARENT": f"{parent}-01"}, {"HTTP_TRACEPARENT": f"{parent}-00"}
    never = Sampling("parentbased_traceidratio", 0.0)
    assert never.sampled(sampled) and not never.sampled(unsampled) and not never.sampled({})
    assert not never.sampled({"HTTP_TRACEPARENT": "00-" + "0" * 32 + "-" + "cd" * 8 + "-01"})
    assert Sampling("parentbased_always_on", 1.0).sampled({})
    assert not Sampling("parentbased_always_on", 1.0).sampled(unsampled)
    assert Sampling("always_on", 1.0).sampled(unsampled)  # not parent-based: ignores it
    assert not Sampling("always_off", 1.0).sampled(sampled)
    # Without the W3C propagator (OTEL_PROPAGATORS=b3, none) a traceparent is no parent.
    assert Sampling("parentbased_always_on", 1.0, follows_traceparent=False).sampled(unsampled)
    tenth = Sampling("traceidratio", 0.1)
    share = sum(tenth.sampled({}) for _ in range(20_000)) / 20_000
    assert 0.08 < share < 0.12


def test_a_ratio_decides_a_callers_trace_as_the_sdk_does_every_time() -> None:
    # A draw per request kept one caller's trace in some requests and dropped it in
    # others; the SDK (and every other service with the same ratio) decides by trace id.
    from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

    from cruddur.telemetry.tracing import Sampling

    half = Sampling("traceidratio", 0.5)
    sdk = TraceIdRatioBased(0.5)
    for trace_id in ("1111111111111111" + "0" * 15 + "1", "2222222222222222" + "f" * 16):
        header = {"HTTP_TRACEPARENT": f"00-{trace_id}-{'cd' * 8}-01"}
        expected = sdk.should_sample(None, int(trace_id, 16), "x").decision
        decisions = {half.sampled(header) for _ in range(50)}
        assert decisions == {expected is Decision.RECORD_AND_SAMPLE}, trace_id


def test_the_gate_takes_a_parent_exactly_when_the_propagator_does() -> None:
    # A header the propagator ignores (version ff; 00 with more after the flags) was
    # taken as a sampled parent here: traced as a new root whatever the ratio.
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from cruddur.telemetry.tracing import Sampling

    ids = "ab" * 16 + "-" + "cd" * 8
    never = Sampling("parentbased_traceidratio", 0.0)
    headers = [
        f"00-{ids}-01", f"00-{ids}-00", f"ff-{ids}-01", f"00-{ids}-01garbage",
        f"00-{ids}-01-extra", f"cc-{ids}-01-what-comes-later", f"  00-{ids}-01\t",
        f"00-{ids.upper()}-01", f"00-{'0' * 32}-{'cd' * 8}-01", f"00-{ids}-011",
    ]  # fmt: skip
    for header in headers:
        context = TraceContextTextMapPropagator().extract({"traceparent": header})
        parent = trace.get_current_span(context).get_span_context()
        expected = parent.is_valid and parent.trace_flags.sampled
        assert never.sampled({"HTTP_TRACEPARENT": header}) == expected, header


def test_the_flask_instrumentation_settled_once_keeps_what_the_variables_ask(
    monkeypatch,
) -> None:
    """tracing._settle_flask_instrumentation: with no excluded URL and no captured header
    set, the same span as the instrumentation's own; with them set, their behaviour."""
    from flask import Flask
    from opentelemetry.instrumentation import wsgi
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from cruddur.telemetry import tracing

    for name in ("collect_custom_request_headers_attributes",
                 "collect_custom_response_headers_attributes"):  # fmt: skip
        monkeypatch.setattr(wsgi, name, getattr(wsgi, name))  # put back after the test

    def traced(excluded: str, **env: str) -> list:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        app = Flask("settled")
        app.add_url_rule("/feed", "feed", lambda: "[]")
        app.add_url_rule("/healthz", "healthz", lambda: "ok")
        FlaskInstrumentor().instrument_app(app, tracer_provider=provider, excluded_urls=excluded)
        tracing._settle_flask_instrumentation(app)
        client = app.test_client()
        assert client.get("/feed?limit=2", headers={"X-Probe": "p"}).status_code == 200
        assert client.get("/healthz").status_code == 200
        return list(memory.get_finished_spans())

    plain = traced("")
    assert [span.name for span in plain] == ["GET /feed", "GET /healthz"]
    assert not any(key.startswith("http.request.header") for key in plain[0].attributes)
    assert dict(plain[0].attributes)["http.target"] == "/feed?limit=2"
    configured = traced(
        "healthz",
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST="x-probe",
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE="content-type",
    )
    assert [span.name for span in configured] == ["GET /feed"]  # healthz excluded
    attributes = dict(configured[0].attributes)
    assert attributes["http.request.header.x_probe"] == ("p",)
    assert attributes["http.response.header.content_type"] == ("text/html; charset=utf-8",)
    assert {k: v for k, v in attributes.items() if "header" not in k} == dict(plain[0].attributes)


def test_unsampled_requests_are_not_traced_and_sampled_callers_are_followed(
    own_server, own_receiver: OtlpReceiver
) -> None:
    server = own_server(
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0",  # no trace of our own: only the callers'
    )
    for n in range(5):
        assert (
            request(
                f"{server.base}/api/activities/home", headers={"X-Request-Id": f"unsampled-{n}"}
            )[0]
            == 200
        )
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    status = request(
        f"{server.base}/api/activities/home",
        headers={"traceparent": traceparent, "X-Request-Id": "followed-1"},
    )[0]
    assert status == 200
    spans = _trace(own_receiver, trace_id, {"GET /api/activities/home", "home-activities"})
    assert sum(len(group) for group in spans.values()) == 3  # server, use case, SQL
    server.stop()
    assert {s.trace_id for s in own_receiver.spans} == {trace_id}  # nothing else was traced
    lines = {line["request_id"]: line for line in server.request_lines()}
    assert lines["followed-1"]["trace_id"] == trace_id
    assert all("trace_id" not in lines[f"unsampled-{n}"] for n in range(5))


def _python(script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`script` in a Python process of its own, with this process's environment less its
    OTEL_* settings, and `env`."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | env
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", script, *args],
        env=full_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


# An unsampled request's statements never reach the psycopg instrumentation's cursor: its
# wrapper and check cost each statement ~60 Python bytecodes to make no span.
_CURSOR_SPY = """
from opentelemetry.instrumentation import dbapi
calls = []
traced_execution = dbapi.CursorTracer.traced_execution
def spy(self, *args, **kwargs):
    calls.append(1)
    return traced_execution(self, *args, **kwargs)
dbapi.CursorTracer.traced_execution = spy
from werkzeug.test import EnvironBuilder
from cruddur.api import create_worker_app
from cruddur.telemetry import tracing
app = create_worker_app()
environ = EnvironBuilder("/api/activities/home", query_string="limit=3").get_environ()
def statements(ratio):
    tracing._sampling.ratio = ratio
    before = len(calls)
    status = []
    b"".join(app(dict(environ), lambda s, h, e=None: status.append(s)))
    assert status == ["200 OK"], status
    return len(calls) - before
print("counted", statements(0.0), statements(1.0), statements(0.0))
tracing.stop()
"""


def test_an_unsampled_requests_sql_skips_the_instrumentations_cursor(
    module_db: str, own_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    done = _python(
        _CURSOR_SPY, CONNECTION_URL=module_db, CRUDDUR_HOME=str(tmp_path),
        CRUDDUR_FEED_CACHE="0", OTEL_EXPORTER_OTLP_ENDPOINT=own_receiver.url,
        OTEL_TRACES_SAMPLER="traceidratio",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    counted = [line for line in done.stdout.splitlines() if line.startswith("counted ")]
    unsampled, sampled, unsampled_again = map(int, counted[0].split()[1:])
    assert (unsampled, unsampled_again) == (0, 0) and sampled >= 1


_START_STOP = """
import os, sys
from cruddur.config import TelemetrySettings
from cruddur.telemetry import tracing
tracing.start(TelemetrySettings.from_env(dict(os.environ)), gated=sys.argv[1] == "gated")
def told():
    pool = sys.modules.get("cruddur.db.pool")
    return "-" if pool is None else str(pool.PooledConnection.unsampled is not None)
running = told()
tracing.stop()
print("told", running, told())
"""


@pytest.mark.parametrize(("kind", "told"), [("gated", "True False"), ("cli", "- -")])
def test_only_a_server_worker_tells_the_pool_of_unsampled_requests(
    own_receiver: OtlpReceiver, kind: str, told: str
) -> None:
    # A worker's pool learns how to tell an unsampled request, and forgets it at stop; a
    # CLI process's is never told, and stopping does not load it ("-": not loaded).
    done = _python(_START_STOP, kind, OTEL_EXPORTER_OTLP_ENDPOINT=own_receiver.url)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if line.startswith("told ")]
    assert said == [f"told {told}"]


def test_sql_outside_any_request_is_never_traced(own_server, own_receiver: OtlpReceiver) -> None:
    # The feed cache's LISTEN, and the NOTIFY its notifier sends after a write, run in
    # threads of their own, outside any request: each was a trace of its own, whatever
    # OTEL_TRACES_SAMPLER said (the replica watcher's looks too, two a second).
    server = own_server(
        CRUDDUR_FEED_CACHE="1", OTEL_TRACES_SAMPLER="always_off", OTEL_BSP_SCHEDULE_DELAY="100"
    )
    token = _token(server)
    for n in range(3):
        created = request(
            f"{server.base}/api/activities", method="POST",
            data=json.dumps({"message": f"unsampled {n}", "ttl": "1-hour"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )  # fmt: skip
        assert created[0] == 201
        assert request(f"{server.base}/api/activities/home")[0] == 200
    time.sleep(0.5)  # the notifier's NOTIFY, and an export 100 ms after it
    server.stop()
    assert [(s.name, s.parent_span_id) for s in own_receiver.spans] == []


def test_the_cli_long_verbs_send_their_spans(
    empty_db: str, tmp_path: Path, own_receiver: OtlpReceiver
) -> None:
    env = {
        "CONNECTION_URL": empty_db,
        "CRUDDUR_HOME": str(tmp_path),
        "OTEL_EXPORTER_OTLP_ENDPOINT": own_receiver.url,
        "OTEL_SERVICE_NAME": "cruddur-cli",
    }
    migrated = run(CRUDDUR, "db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    plain = run(CRUDDUR, "db", "seed", env=env)
    assert plain.returncode == 0, plain.stderr
    seeded = run(CRUDDUR, "db", "seed", "--fake", "--users", "20", "--activities", "50", env=env)
    assert seeded.returncode == 0, seeded.stderr
    # All were sent before each command returned.
    by_name = {span.name: span for span in own_receiver.spans}
    migrate = by_name["cruddur db migrate"]
    sample, seed = [s for s in own_receiver.spans if s.name == "cruddur db seed"]
    assert migrate.service == "cruddur-cli" and migrate.parent_span_id == ""
    assert seed.attributes["cruddur.option.fake"] is True
    assert seed.attributes["cruddur.option.activities"] == 50
    assert "cruddur.option.replace" not in seed.attributes  # not given
    # The sample data's seed: none of --fake's defaults (1000 users), which did not apply.
    assert not [key for key in sample.attributes if key.startswith("cruddur.option.")]
    statements = [s for s in own_receiver.spans if s.parent_span_id == migrate.span_id]
    assert statements and all(s.kind == CLIENT for s in statements)
    # The pool's check of each connection it hands out is no statement of the verb's: it
    # was a span of its own, named after the database, with an empty db.statement.
    clients = [s for s in own_receiver.spans if s.kind == CLIENT]
    assert not [(s.name, s.attributes) for s in clients if not s.attributes.get("db.statement")]


def test_a_cli_verb_samples_as_the_settings_read_the_sampler(
    empty_db: str, tmp_path: Path, own_receiver: OtlpReceiver
) -> None:
    # A review: the settings took "always_off " (a space after), the SDK read it again as
    # it was, did not know it, and sampled everything; and a blank service name was taken.
    env = {
        "CONNECTION_URL": empty_db, "CRUDDUR_HOME": str(tmp_path),
        "OTEL_EXPORTER_OTLP_ENDPOINT": own_receiver.url, "OTEL_TRACES_SAMPLER": "always_off ",
    }  # fmt: skip
    migrated = run(CRUDDUR, "db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert own_receiver.spans == [] and "Couldn't recognize" not in migrated.stderr
    env.update(OTEL_TRACES_SAMPLER=" parentbased_always_on", OTEL_SERVICE_NAME="  ")
    again = run(CRUDDUR, "db", "migrate", env=env)
    assert again.returncode == 0, again.stderr
    (span,) = [s for s in own_receiver.spans if s.name == "cruddur db migrate"]
    assert span.service == "backend-flask"


def _sign_up_in_a_process(
    user_name: str | None, attributes: dict[str, str], **env: str
) -> subprocess.CompletedProcess[str]:
    """The sign-up Lambda's handler, given one confirmed sign-up, in a Python process of
    its own with this environment (none of this one's OTEL_* settings) and `env`."""
    script = (
        "import json, sys\n"
        "from cruddur.lambdas.post_confirmation import handler\n"
        "handler(json.loads(sys.argv[1]), None)\n"
    )
    event: dict[str, object] = {
        "triggerSource": "PostConfirmation_ConfirmSignUp",
        "request": {"userAttributes": attributes},
    }
    if user_name is not None:
        event["userName"] = user_name
    return _python(script, json.dumps(event), **env)


def test_the_sign_up_lambda_sends_a_span_per_invocation(
    seeded_db: str, own_receiver: OtlpReceiver
) -> None:
    done = _sign_up_in_a_process(
        "traced-user",
        {"sub": "3f1c2a9e-0000-4000-8000-traced000001", "email": "hidden@example.com",
         "preferred_username": "traceduser"},
        CONNECTION_URL=seeded_db,
        OTEL_EXPORTER_OTLP_ENDPOINT=own_receiver.url,
        AWS_LAMBDA_FUNCTION_NAME="cruddur-post-confirmation",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Sent within the invocation: the process has ended and the spans are here.
    (invocation,) = [s for s in own_receiver.spans if s.name == "post-confirmation"]
    assert invocation.service == "cruddur-post-confirmation"
    assert invocation.attributes["app.trigger_source"] == "PostConfirmation_ConfirmSignUp"
    (insert,) = [s for s in own_receiver.spans if s.parent_span_id == invocation.span_id]
    assert insert.kind == CLIENT and "INSERT" in insert.attributes["db.statement"]
    assert "hidden@example.com" not in json.dumps([s.attributes for s in own_receiver.spans])


def test_the_sign_up_lambda_samples_as_the_settings_read_the_sampler(
    seeded_db: str, own_receiver: OtlpReceiver
) -> None:
    # A review: its own tracer provider left the sampler to the SDK, which read
    # "always_off " (a space after) as unknown and sampled every sign-up; and a blank
    # service name was taken.
    attributes = {"sub": "3f1c2a9e-0000-4000-8000-traced000002", "email": "x@example.com",
                  "preferred_username": "sampledout"}  # fmt: skip
    done = _sign_up_in_a_process(
        "sampled-out", attributes, CONNECTION_URL=seeded_db,
        OTEL_EXPORTER_OTLP_ENDPOINT=own_receiver.url, OTEL_TRACES_SAMPLER="always_off ",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert own_receiver.spans == [] and "Couldn't recognize" not in done.stderr
    # Off as the settings say it is: OTEL_SDK_DISABLED=1 too (it traced all, sampled).
    for n, off in enumerate(({"OTEL_SDK_DISABLED": "1"}, {"OTEL_TRACES_EXPORTER": "none"})):
        attributes = {**attributes, "sub": f"3f1c2a9e-0000-4000-8000-traced00001{n}",
                      "preferred_username": f"disabled{n}"}  # fmt: skip
        done = _sign_up_in_a_process(
            f"disabled-{n}", attributes, CONNECTION_URL=seeded_db,
            OTEL_EXPORTER_OTLP_ENDPOINT=own_receiver.url, **off,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert own_receiver.spans == []
    attributes = {**attributes, "sub": "3f1c2a9e-0000-4000-8000-traced000003",
                  "preferred_username": "namedright"}  # fmt: skip
    done = _sign_up_in_a_process(
        "named-right", attributes, CONNECTION_URL=seeded_db,
        OTEL_EXPORTER_OTLP_ENDPOINT=own_receiver.url, OTEL_SERVICE_NAME="  ",
        AWS_LAMBDA_FUNCTION_NAME="cruddur-post-confirmation",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (invocation,) = [s for s in own_receiver.spans if s.name == "post-confirmation"]
    assert invocation.service == "cruddur-post-confirmation"


def test_a_refused_sign_ups_email_and_name_stay_out_of_its_spans(
    seeded_db: str, own_receiver: OtlpReceiver
) -> None:
    # The insert breaks the name's CHECK: PostgreSQL's DETAIL quotes the whole row.
    script = (
        "import json, sys\n"
        "from cruddur.lambdas.post_confirmation import handler, SignUpError\n"
        "try:\n"
        "    handler(json.loads(sys.argv[1]), None)\n"
        "except SignUpError as exc:\n"
        "    print(exc)\n"
    )
    event = {
        "triggerSource": "PostConfirmation_ConfirmSignUp",
        "request": {
            "userAttributes": {
                "sub": "3f1c2a9e-0000-4000-8000-refused00001",
                "email": "hidden-email@example.com",
                "preferred_username": "hiddenhandle",
                "name": "Hidden Name " * 30,
            }
        },
    }
    done = _python(
        script, json.dumps(event), CONNECTION_URL=seeded_db,
        OTEL_EXPORTER_OTLP_ENDPOINT=own_receiver.url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "the name must be" in done.stdout
    sent = b"".join(own_receiver.bodies)
    assert b"users_display_name_check" in sent  # the error is there, without the row
    for value in (b"hidden-email", b"Hidden Name", b"hiddenhandle"):
        assert value not in sent


@pytest.mark.parametrize(
    "headers",
    [
        "x-honeycomb-team:SECRETKEY123",
        "a=b,x-honeycomb-team SECRETKEY123",
        # The README's x-honeycomb-team=${HONEYCOMB_API_KEY} with the variable unset: every
        # export was refused (401) and only a later log line said so.
        "x-honeycomb-team=",
    ],
)
def test_malformed_otlp_headers_stop_serve_without_showing_the_key(
    headers: str, tmp_path: Path
) -> None:
    # The SDK would skip such an entry with a warning quoting it, key and all, and send
    # traces without it. Serve refuses to start instead, naming the entry by position.
    env = {
        "CRUDDUR_HOME": str(tmp_path),
        "CONNECTION_URL": "postgresql://postgres@127.0.0.1:1/cruddur",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://api.honeycomb.io",
        "OTEL_EXPORTER_OTLP_HEADERS": headers,
    }
    refused = run(ROOT / ".venv/bin/cruddur", "serve", "--port", str(free_port()), env=env)
    assert refused.returncode == 1
    if headers.endswith("="):
        assert "OTEL_EXPORTER_OTLP_HEADERS: x-honeycomb-team has no value" in refused.stderr
    else:
        assert "OTEL_EXPORTER_OTLP_HEADERS: entry" in refused.stderr
        assert "not name=value" in refused.stderr
    assert "SECRETKEY123" not in refused.stdout + refused.stderr


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE (512) must not be"),
        ("OTEL_BSP_SCHEDULE_DELAY", "0", "OTEL_BSP_SCHEDULE_DELAY must be at least 1"),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "abc", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT must be a"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-1", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT must be"),
        ("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "([", "OTEL_PYTHON_FLASK_EXCLUDED_URLS holds a"),
        (  # compiled on every sampled request, which it failed
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
            "x-([",
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST holds a",
        ),
        (
            "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
            "nope",
            "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER names 'nope', which no",
        ),
        (  # looked up as given: blanks are no provider's name
            "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
            "   ",
            "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER names '   ', which no",
        ),
        (  # X-Ray's, whose package is not installed: raised when the SDK was imported
            "OTEL_PROPAGATORS",
            "tracecontext,xray",
            "OTEL_PROPAGATORS names 'xray', which no installed package provides",
        ),
        ("OTEL_PROPAGATORS", "tracecontext,", "OTEL_PROPAGATORS names '', which no"),
        (  # joined with its empty first entry: the flag is no longer at the start
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",
            ",(?i)x-foo",
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE holds a",
        ),
        # The exporter's: every export failed without a line, or it warned and went on.
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "/nonexistent/ca.pem",
            "OTEL_EXPORTER_OTLP_CERTIFICATE: /nonexistent/ca.pem does not exist",
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/", "_TRACES_CLIENT_KEY: / is not a file"),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/no/c.pem", "OTEL_EXPORTER_OTLP_CLIENT_CERTI"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli", "OTEL_EXPORTER_OTLP_COMPRESSION must be one"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSI"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "abc", "OTEL_EXPORTER_OTLP_TIMEOUT must be a number of"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT must be"),
    ],
)
def test_a_malformed_sdk_setting_stops_serve_in_one_line(
    setting: str, value: str, said: str, tmp_path: Path
) -> None:
    # The SDK raised in each worker, after "Listening": every worker stopped with a
    # traceback (and the sign-up Lambda's first invocation failed).
    env = {
        "CRUDDUR_HOME": str(tmp_path),
        "CONNECTION_URL": "postgresql://postgres@127.0.0.1:1/cruddur",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        setting: value,
    }
    refused = run(ROOT / ".venv/bin/cruddur", "serve", "--port", str(free_port()), env=env)
    assert refused.returncode == 1
    assert said in refused.stderr and "Traceback" not in refused.stderr, refused.stderr


def test_the_exporters_files_compressions_and_timeouts_it_takes_are_taken(
    tmp_path: Path,
) -> None:
    from cruddur.config import ConfigError, TelemetrySettings, check_otel_sdk_settings

    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here: the exporter reads it")
    check_otel_sdk_settings(
        {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(ca), "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5"}
    )
    for value in ("gzip", "deflate", "none", " GZIP "):  # as the exporter reads them
        check_otel_sdk_settings({"OTEL_EXPORTER_OTLP_COMPRESSION": value})
    # The traces' own setting wins, as in the exporter: the general one is not read.
    check_otel_sdk_settings(
        {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "5", "OTEL_EXPORTER_OTLP_TIMEOUT": "abc"}
    )
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TIMEOUT must be"):
        check_otel_sdk_settings({"OTEL_EXPORTER_OTLP_TIMEOUT": "nan"})
    # Read only with tracing on, as the other OTEL_* settings.
    assert not TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_TIMEOUT": "abc"}).traces


def test_the_propagators_the_sdk_takes_are_taken() -> None:
    from cruddur.config import check_otel_sdk_settings

    for value in ("tracecontext,baggage", " tracecontext ", "none", "tracecontext,none,nope"):
        check_otel_sdk_settings({"OTEL_PROPAGATORS": value})  # as opentelemetry.propagate


def test_a_resource_attribute_that_is_not_key_value_is_refused_without_its_text() -> None:
    # The SDK skipped `foo` with a warning in each worker's log, and serve ran on.
    from cruddur.config import ConfigError, check_otel_sdk_settings

    for value in ("deployment.environment=prod, team=a%2Cb", "a=1,,b=", ""):
        check_otel_sdk_settings({"OTEL_RESOURCE_ATTRIBUTES": value})  # as the SDK reads them
    for value, position in (("foo", 1), ("a=1,secretvalue", 2), ("=x", 1)):
        with pytest.raises(ConfigError) as refused:
            check_otel_sdk_settings({"OTEL_RESOURCE_ATTRIBUTES": value})
        said = str(refused.value)
        assert said.startswith(f"OTEL_RESOURCE_ATTRIBUTES: entry {position} is not key=value")
        assert "secret" not in said and "foo" not in said


# An endpoint with an API key in its query and its userinfo, and a key in the headers.
KEYED = {
    "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=HEADERKEY42",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "2",  # the exporter's retries: a few seconds, not 10
}
KEYS = ("key123", "pass-word-9", "HEADERKEY42")


def _keyed_endpoint(port: int) -> str:
    return f"http://user:pass-word-9@127.0.0.1:{port}/v1/traces?api_key=key123"


def test_the_log_cuts_the_otlp_endpoints_keys_from_messages_and_tracebacks() -> None:
    from cruddur.config import TelemetrySettings
    from cruddur.telemetry.logs import JsonFormatter, Redactor, TextFormatter

    settings = TelemetrySettings.from_env(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": _keyed_endpoint(9), **KEYED}
    )
    assert settings.traces
    logger = logging.getLogger("test.redaction")
    logger.propagate = False
    streams = []
    for formatter in (JsonFormatter(), TextFormatter()):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(Redactor(settings.secrets))
        logger.addHandler(handler)
        streams.append(stream)
    try:
        # As urllib3's error reaches the exporter's warning: the path and query.
        logger.warning(
            "Transient error %s encountered while exporting span batch",
            "Max retries exceeded with url: /v1/traces?api_key=key123 (Connection refused)",
        )
        try:
            try:
                raise ConnectionError(f"refused: {_keyed_endpoint(9)} (HEADERKEY42)")
            except ConnectionError as exc:
                raise RuntimeError("api_key=key123 failed") from exc
        except RuntimeError:
            logger.exception("Exception while exporting Span batch.")
    finally:
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
        logger.propagate = True
    written = [stream.getvalue() for stream in streams]
    for text in written:
        assert not any(key in text for key in KEYS), text
        assert "url: /v1/traces?*** (Connection refused)" in text  # what failed, still said
        assert "refused: http://***@127.0.0.1:9/v1/traces?*** (***)" in text
        assert "RuntimeError: *** failed" in text
    warning, error = (json.loads(line) for line in written[0].splitlines())
    assert warning["level"] == "warning" and error["error"] == "RuntimeError: *** failed"
    assert "Traceback (most recent call last)" in error["traceback"]
    assert "The above exception was the direct cause" in error["traceback"]


def test_plain_words_in_the_otlp_settings_are_not_cut_from_every_line() -> None:
    # A dataset's name and a tenant are not credentials: cutting every "cruddur" and
    # "production" out of all log lines made them lie ("database *** as ***_api").
    from cruddur.config import TelemetrySettings

    settings = TelemetrySettings.from_env(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"
            "?tenant=production&api_key=key123",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=HEADERKEY42,"
            "x-honeycomb-dataset=cruddur,x-scope-orgid=abcdefghijklmnopq",
        }
    )
    assert "cruddur" not in settings.secrets and "production" not in settings.secrets
    for secret in ("key123", "HEADERKEY42", "abcdefghijklmnopq"):  # by name, or by length
        assert secret in settings.secrets


def test_a_record_that_cannot_be_formatted_does_not_raise_through_the_redactor() -> None:
    # logging reports a bad call ("--- Logging error ---") from inside emit; a filter runs
    # before emit's guard, so one that raised sent a TypeError into the caller (a request,
    # the exporter's thread).
    from cruddur.telemetry.logs import Redactor

    logger = logging.getLogger("test.redaction.bad")
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(Redactor(["key123"]))
    logger.addHandler(handler)
    raise_exceptions = logging.raiseExceptions
    logging.raiseExceptions = False  # as in production: logging swallows it quietly
    try:
        logger.warning("retrying", "an argument without a placeholder")
        logger.warning("then key123 went out")
    finally:
        logging.raiseExceptions = raise_exceptions
        logger.removeHandler(handler)
        logger.propagate = True
    assert stream.getvalue() == "then *** went out\n"


def test_the_exporters_warnings_in_the_served_log_show_no_key(
    module_db: str, tmp_path: Path
) -> None:
    endpoint = _keyed_endpoint(free_port())  # nothing listens there
    server = Served(
        module_db,
        tmp_path,
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50", **KEYED},
    )
    try:
        assert request(f"{server.base}/api/activities/home")[0] == 200
        # Operators still read why the spans did not go out, and where to.
        assert server.saw("Max retries exceeded with url: /v1/traces?***", timeout=20), (
            server.output
        )
    finally:
        server.stop()
    assert "traces: OTLP/HTTP to http://127.0.0.1:" in server.output
    assert not any(key in server.output for key in KEYS), server.output


def test_a_traced_cli_verb_writes_the_exporters_warnings_without_the_key(
    empty_db: str, tmp_path: Path
) -> None:
    env = {
        "CONNECTION_URL": empty_db,
        "CRUDDUR_HOME": str(tmp_path),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": _keyed_endpoint(free_port()),
        **KEYED,
    }
    migrated = run(CRUDDUR, "db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "Max retries exceeded with url: /v1/traces?***" in migrated.stderr
    assert not any(key in migrated.stdout + migrated.stderr for key in KEYS), migrated.stderr


MALFORMED_ENDPOINTS = [
    ("http://user:key9876@collector:abc", 'the port "abc" is not a number'),
    ("http://collector:99999", "the port 99999 is not from 1 to 65535"),
    ("http://collector:0/v1/traces", "the port 0 is not from 1 to 65535"),
    ("http://apikey:key9876/v1/traces", "the port is not a number"),  # not quoted: a key?
    ("http://[::1", "an IPv6 address's [ or ] is unmatched"),
    ("collector:4318", "it does not start with http:// or https://"),
    ("ftp://collector", 'the scheme "ftp" is not http or https'),
    ("http://key9876@", "it names no host"),
]


@pytest.mark.parametrize(
    "name", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
@pytest.mark.parametrize(("endpoint", "reason"), MALFORMED_ENDPOINTS)
def test_a_malformed_otlp_endpoint_is_refused_by_name_and_reason(
    name: str, endpoint: str, reason: str
) -> None:
    from cruddur.config import ConfigError, TelemetrySettings

    with pytest.raises(ConfigError) as refused:
        TelemetrySettings.from_env({name: endpoint})
    assert str(refused.value) == f"{name}: {reason} (want http(s)://host[:port][/path])"
    assert "key9876" not in str(refused.value)


@pytest.mark.parametrize("endpoint", ["http://c:4318/?api_key=key9876", "http://c:4318#x"])
def test_a_base_endpoint_with_a_query_is_refused(endpoint: str) -> None:
    # The SDK appends /v1/traces to the whole string: the spans went to the path "/" and
    # the key in the query got "/v1/traces" stuck to its end.
    from cruddur.config import ConfigError, TelemetrySettings

    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") as refused:
        TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert str(refused.value).startswith("OTEL_EXPORTER_OTLP_ENDPOINT: the SDK adds /v1/traces")
    assert "key9876" not in str(refused.value)


@pytest.mark.parametrize("endpoint", ["http://c:4318/v1/traces", "https://c/otlp/v1/traces/"])
def test_a_base_endpoint_ending_in_the_traces_path_is_refused(endpoint: str) -> None:
    # The SDK adds /v1/traces to the base: every batch went to …/v1/traces/v1/traces.
    from cruddur.config import ConfigError, TelemetrySettings

    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") as refused:
        TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert str(refused.value).startswith("OTEL_EXPORTER_OTLP_ENDPOINT: it ends in /v1/traces")
    assert TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}).traces


def test_well_formed_otlp_endpoints_are_taken() -> None:
    from cruddur.config import TelemetrySettings

    for endpoint in (
        "https://api.honeycomb.io",
        "http://collector:4318/",
        "HTTP://[::1]:4318/otlp",
    ):
        assert TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}).traces
    # The traces endpoint is used as it is: a key in its query reaches the receiver.
    keyed = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://u:key@127.0.0.1:4318/v1/traces?k=x"}
    assert TelemetrySettings.from_env(keyed).traces
    # Traces off: a malformed endpoint is not read, so not refused.
    off = {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:abc", "OTEL_SDK_DISABLED": "true"}
    assert not TelemetrySettings.from_env(off).traces


@pytest.mark.parametrize(
    "command", [("serve",), ("db", "migrate"), ("db", "seed", "--fake")], ids=" ".join
)
def test_a_malformed_otlp_endpoint_stops_serve_and_the_traced_verbs_in_one_line(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    env = {
        "CRUDDUR_HOME": str(tmp_path),
        "CONNECTION_URL": "postgresql://postgres@127.0.0.1:1/cruddur",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:key9876@collector:abc",
    }
    refused = run(CRUDDUR, *command, env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[0] == (
        'error: OTEL_EXPORTER_OTLP_ENDPOINT: the port "abc" is not a number '
        "(want http(s)://host[:port][/path])"
    )
    output = refused.stdout + refused.stderr
    assert "serving" not in output and "unexpected" not in output and "key9876" not in output


def test_the_sign_up_lambdas_exporter_warnings_show_no_key(seeded_db: str) -> None:
    done = _sign_up_in_a_process(
        None,
        {"sub": "3f1c2a9e-0000-4000-8000-keyed0000001", "email": "keyed@example.com",
         "preferred_username": "keyeduser"},
        CONNECTION_URL=seeded_db,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=_keyed_endpoint(free_port()),
        **KEYED,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Max retries exceeded with url: /v1/traces?***" in done.stderr
    assert not any(key in done.stdout + done.stderr for key in KEYS), done.stderr


def test_health_checks_that_find_the_database_away_count_as_its_errors(tmp_path: Path) -> None:
    # /api/health's 503s were left out of cruddur_db_errors_total: during an outage the
    # load balancer's checks may be nearly all a task is asked, and an alert on 08 stayed
    # silent.
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/cruddur"
    env = {
        "CONNECTION_URL": closed, "CRUDDUR_HOME": str(tmp_path),
        "CRUDDUR_METRICS_PORT": str(free_port()),
    }  # fmt: skip
    server = server_support.Served("--workers", "1", env=env, unset=("OTEL_", "PROD_"))
    server.env = env  # where _scrape finds the metrics' port
    key = ("cruddur_db_errors_total", (("sqlstate_class", "08"),))
    try:
        server.wait_healthy(ready=(503,))
        before = _scrape(server).get(key, 0)
        for _ in range(3):
            assert request(f"{server.base}/api/health")[0] == 503
        assert _scrape(server).get(key, 0) - before == 3
    finally:
        server.stop()


def test_the_readme_names_every_reason_a_token_is_refused_for() -> None:
    # `malformed` (a signed token whose exp is not a time) was counted, and not listed.
    import ast

    tree = ast.parse((ROOT / "src" / "cruddur" / "api" / "auth.py").read_text())
    reasons = {"invalid"}  # InvalidToken's default
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name | ast.Attribute):
            continue
        called = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        given = {"InvalidToken": 1, "count_refused_token": 0}.get(called)
        if given is not None and len(node.args) > given:
            argument = node.args[given]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                reasons.add(argument.value)
    (row,) = [
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `cruddur_auth_tokens_refused_total`")
    ]
    assert len(reasons) > 10 and {r for r in reasons if f"`{r}`" not in row} == set()


_POOL_CHECKS = """
import sys
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
PsycopgInstrumentor().instrument(tracer_provider=provider)
from cruddur.db import Db
with Db(sys.argv[1]) as db:
    db.query_value("SELECT 1")  # a checkout: checked
    db.pool.check()  # the pool's own check of its idle connections
print([span.attributes.get("db.statement") for span in memory.get_finished_spans()])
"""


def test_the_pools_checks_make_no_spans_of_their_own(empty_db: str) -> None:
    # A review: the pool's check of each connection it hands out, and of its idle ones
    # (check(), on the reconnect path), ran on the instrumented cursor: a span each, with
    # an empty statement, named after the database.
    done = subprocess.run(
        [sys.executable, "-c", _POOL_CHECKS, empty_db],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    statements = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert statements and "" not in statements, statements
