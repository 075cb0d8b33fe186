"""Bodies built to break the parser: nested too deep, or over the limit in chunks.

Deep nesting is checked through Flask's test client; the chunked bodies go over real
HTTP to `cruddur serve` (granian), since how a body is framed is the server's business.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import uuid

import psycopg
import pytest
from api_support import snapshot
from served import Served

LIMIT = 16 * 1024


def _nested(depth: int, kind: str) -> bytes:
    if kind == "arrays":
        return b"[" * depth + b"]" * depth
    return b'{"a": ' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [990, 5_000, 100_000])
@pytest.mark.parametrize("kind", ["arrays", "objects"])
def test_deeply_nested_json_is_a_400_and_changes_nothing(
    api, mint, seeded_db: str, depth: int, kind: str
) -> None:
    before = snapshot(seeded_db)
    body = _nested(depth, kind)
    token = mint()
    parent = api.get("/api/activities/home").get_json()[0]["uuid"]
    bodies = {
        "/api/activities": "invalid_json",
        f"/api/activities/{parent}/reply": "invalid_json",
        # The web page's sign-in reads a body too (it said "invalid_handle" of one it
        # could not read).
        "/api/dev/sign-in": "invalid_json",
    }
    for path, error in bodies.items():
        response = api.post(path, data=body, content_type="application/json", token=token)
        if len(body) > LIMIT:
            assert response.status_code == 413, (path, response.get_json())
        else:
            assert response.status_code == 400, (path, response.get_json())
            assert response.get_json()["error"] == error
    # A deep value inside a small body: parsed as far as it goes, then refused, never a 500.
    wrapped = b'{"message": ' + _nested(min(depth, 4_000), kind) + b', "ttl": "1-day"}'
    response = api.post(
        "/api/activities", data=wrapped, content_type="application/json", token=token
    )
    assert response.status_code in (400, 413, 422), response.get_json()
    assert snapshot(seeded_db) == before


@pytest.mark.parametrize(
    "number",
    [b"9" * 5_000, b"-" + b"9" * 4_301, b"1." + b"0" * 5_000, b"0." + b"0" * 5_000 + b"1"],
    ids=["whole", "negative", "decimal", "small decimal"],
)
def test_a_number_of_too_many_digits_is_a_400_in_the_apis_words(
    api, mint, seeded_db: str, number: bytes
) -> None:
    # Python's int() refuses over 4,300 digits with advice to call a Python function;
    # the client gets a sentence about its body instead. float() refuses none: a long
    # decimal made a crud.
    before = snapshot(seeded_db)
    body = b'{"message": "hi", "ttl": "1-day", "n": ' + number + b"}"
    response = api.post("/api/activities", data=body, content_type="application/json", token=mint())
    assert snapshot(seeded_db) == before
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_json"
    assert response.get_json()["message"] == "the body has a number with too many digits"


@pytest.mark.parametrize(
    "number",
    # 4,300 digits each: a review found the decimals refused, their point and e counted.
    [b"3." + b"1" * 3_999, b"1" * 4_300, b"-1." + b"1" * 4_299, b"1" * 4_298 + b"e+1"],
    ids=["4,000 digits", "whole", "decimal", "exponent"],
)
def test_a_number_of_many_digits_within_the_limit_is_read(api, mint, number: bytes) -> None:
    body = b'{"message": "pi", "ttl": "1-day", "n": ' + number + b"}"
    response = api.post("/api/activities", data=body, content_type="application/json", token=mint())
    assert response.status_code == 201, response.get_json()


def _post_raw(
    served: Served, framing: str, pieces: list[bytes], token: str, path: str = "/api/activities"
) -> tuple[int, dict]:
    """POST with the `framing` header line, sending `pieces` one by one, then read the
    answer. The server may answer and close before the whole body is sent: sending stops
    at the first refused write, and the answer is read all the same."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"{framing}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for piece in [head.encode(), *pieces]:
                sock.sendall(piece)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(65536):
                answer += data
    head_text, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head_text.split()[1])
    return status, json.loads(payload) if payload.strip() else {}


def _post_chunked(
    served: Served, body: bytes, token: str, chunk: int = 4096, path: str = "/api/activities"
) -> tuple[int, dict]:
    """POST body with Transfer-Encoding: chunked (no Content-Length)."""
    pieces = [body[start : start + chunk] for start in range(0, len(body), chunk)]
    framed = [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]
    return _post_raw(served, "Transfer-Encoding: chunked", framed, token, path)


def test_chunked_bodies_over_the_limit_are_413_and_change_nothing(served: Served) -> None:
    before = snapshot(served.url)
    token = served.token("andrewbrown")
    valid = json.dumps({"message": "padded", "ttl": "1-hour"}).encode()
    too_large = [
        valid + b" " * 30_000,  # valid JSON, then whitespace past the limit
        b'"' + b"x" * (10 * 1024 * 1024),  # 10 MB of an unterminated string
        valid[:-1] + b', "pad": "' + b"y" * LIMIT + b'"}',
    ]
    for body in too_large:
        status, answer = _post_chunked(served, body, token)
        assert status == 413, (len(body), answer)
        assert answer["error"] == "body_too_large"
    signing_in = json.dumps({"handle": "andrewbrown"}).encode() + b" " * 30_000
    status, answer = _post_chunked(served, signing_in, token, path="/api/dev/sign-in")
    assert status == 413, answer
    assert snapshot(served.url) == before


def test_chunked_bodies_within_the_limit_are_411_under_granian(served: Served) -> None:
    # granian cannot tell a chunked body cut off on the way from a whole one (below):
    # within the limit, whole or not, such a body is refused for a Content-Length.
    before = snapshot(served.url)
    token = served.token("andrewbrown")
    valid = json.dumps({"message": "padded", "ttl": "1-hour"}).encode()
    at_limit = valid + b" " * (LIMIT - len(valid))
    for body, chunk in ((valid, 4096), (at_limit, 1000)):
        status, answer = _post_chunked(served, body, token, chunk=chunk)
        assert status == 411, answer
        assert answer["error"] == "length_required"
        assert "Content-Length" in answer["message"]
    assert snapshot(served.url) == before
    # With a Content-Length the same body is taken.
    assert _post_with_length(served, valid, token, len(valid)) == 201


def _cut_off(served: Served, head: str, body: bytes, *, closed: bool) -> bytes:
    """Send a chunked POST whose body stops before its last chunk, then shut the socket
    for writing (or close it outright); the answer's status line, if any came."""
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=20)
    try:
        sock.sendall(head.encode() + body)
        if closed:
            return b""
        sock.shutdown(socket.SHUT_WR)
        return sock.recv(200).split(b"\r\n")[0]
    finally:
        sock.close()


@pytest.mark.parametrize("closed", [False, True], ids=["half-closed", "closed"])
@pytest.mark.parametrize(
    "cut", ["inside a chunk", "before the last chunk"], ids=["in-chunk", "no-last-chunk"]
)
def test_a_chunked_write_cut_off_on_the_way_is_not_stored(
    served: Served, closed: bool, cut: str
) -> None:
    # A review: under granian a create, a keyed create or a reply whose chunked body
    # stopped early (a 256-byte chunk announced and 51 bytes sent, or no closing zero
    # chunk) was stored, answered 201 (or not at all), and a retry stored it again.
    token = served.token("andrewbrown")
    made = json.dumps({"message": "parent", "ttl": "1-hour"}).encode()
    status, parent = _post_raw(served, f"Content-Length: {len(made)}", [made], token)
    assert status == 201, parent
    before = snapshot(served.url)
    for path, key in (
        ("/api/activities", ""),
        ("/api/activities", f"Idempotency-Key: {uuid.uuid4()}\r\n"),
        (f"/api/activities/{parent['uuid']}/reply", ""),
    ):
        body = json.dumps({"message": "never finished sending", "ttl": "1-hour"}).encode()
        framed = (
            b"100\r\n" + body if cut == "inside a chunk" else b"%x\r\n%s\r\n" % (len(body), body)
        )
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{key}Transfer-Encoding: chunked\r\n\r\n"
        )
        status = _cut_off(served, head, framed, closed=closed)
        assert not status.startswith(b"HTTP/1.1 2"), (path, status)
    time.sleep(0.5)  # a closed socket's request is still being handled
    assert snapshot(served.url) == before


def test_an_idempotency_key_sent_twice_is_a_400_and_changes_nothing(served: Served) -> None:
    # A review: granian joins the two into "a,b", which was stored as a key of its own;
    # a retry sending only "a" then stored the crud again.
    before = snapshot(served.url)
    body = json.dumps({"message": "keyed twice", "ttl": "1-hour"}).encode()
    framing = f"Idempotency-Key: a\r\nIdempotency-Key: b\r\nContent-Length: {len(body)}"
    status, answer = _post_raw(served, framing, [body], served.token("andrewbrown"))
    assert status == 400, answer
    assert answer["error"] == "invalid_idempotency_key"
    assert snapshot(served.url) == before


def test_a_local_http_1_0_request_without_host_reaches_the_development_sign_in(
    served: Served,
) -> None:
    # A review: granian passes a missing Host on as "", which read as a name not of this
    # machine: the development sign-in answered 404 to a local HTTP/1.0 client (200
    # under gunicorn), against its own comment.
    with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
        sock.sendall(b"GET /api/dev/users HTTP/1.0\r\n\r\n")
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200", answer[:300]
    assert "andrewbrown" in json.dumps(json.loads(body))


def test_an_http_1_1_request_without_host_is_a_400_and_changes_nothing(served: Served) -> None:
    # A review: granian hands a missing Host on as "", and an HTTP/1.1 request without
    # one got the feed, and a write was stored (RFC 9112, 3.2: a server answers it 400).
    before = snapshot(served.url)
    body = b'{"message": "no host", "ttl": "1-day"}'
    token = served.token("andrewbrown")
    for request in [
        b"GET /api/activities/home HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /api/activities/home HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        b"POST /api/activities HTTP/1.1\r\nAuthorization: Bearer %s\r\nContent-Type: "
        b"application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (token.encode(), len(body), body),
    ]:
        with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
            sock.sendall(request)
            answer = b""
            while data := sock.recv(65536):
                answer += data
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.split()[1] == b"400", answer[:300]
        assert json.loads(payload)["error"] == "missing_host"
    assert snapshot(served.url) == before


@pytest.mark.parametrize("declared", ["+100", "100"])
def test_a_body_shorter_than_its_content_length_is_a_400_and_changes_nothing(
    api, mint, seeded_db: str, declared: str
) -> None:
    """The body is read as the Content-Length says: a client that stops sending before
    the last byte it promised gets a 400, not a crud made from the part that came."""
    before = snapshot(seeded_db)
    body = json.dumps({"message": "cut short", "ttl": "1-hour"}).encode()
    length = str(len(body) + 100) if declared == "100" else f"+{len(body)}"
    # Flask's own client: the checked one reads the sent body again, to check the answer.
    response = api.client.post(
        "/api/activities",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {mint()}"},
        environ_overrides={"CONTENT_LENGTH": length},
    )
    # "+n" is no length werkzeug reads as n (it reads none of the body): still a 400.
    assert response.status_code == 400, response.get_json()
    assert snapshot(seeded_db) == before


def test_a_signed_in_write_whose_body_never_comes_is_logged_with_its_user(
    served: Served,
) -> None:
    # A review: a create without Flask (its author known to the worker) read the body
    # before it noted the caller; a client that sent part of it and hung up got its 400
    # and a log line without user_uuid.
    token = served.token("andrewbrown")
    valid = json.dumps({"message": "known", "ttl": "1-hour"}).encode()
    assert _post_raw(served, f"Content-Length: {len(valid)}", [valid], token)[0] == 201
    request_id = f"cut-short-{uuid.uuid4().hex[:8]}"
    with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
        sock.sendall(
            f"POST /api/activities HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"X-Request-Id: {request_id}\r\nContent-Length: 1000\r\n\r\n"
            '{"message":"partial'.encode()
        )
        sock.shutdown(socket.SHUT_WR)
        assert b" 400 " in sock.recv(4096).partition(b"\r\n")[0]
    assert served.saw(request_id, timeout=5)
    (line,) = [json.loads(x) for x in served.output.splitlines() if request_id in x]
    with psycopg.connect(served.url) as conn:
        (author,) = conn.execute(
            "SELECT uuid::text FROM users WHERE handle = 'andrewbrown'"
        ).fetchone()
    assert line["status"] == 400 and line.get("user_uuid") == author, line


def _post_with_length(served: Served, body: bytes, token: str, declared: int) -> int:
    """POST body framed by a Content-Length of `declared`; the answer's status."""
    return _post_raw(served, f"Content-Length: {declared}", [body], token)[0]


def test_bodies_framed_by_content_length_are_read_whole_or_refused(served: Served) -> None:
    before = snapshot(served.url)
    token = served.token("andrewbrown")
    valid = json.dumps({"message": "by length", "ttl": "1-hour"}).encode()
    too_large = valid[:-1] + b', "pad": "' + b"y" * LIMIT + b'"}'
    assert _post_with_length(served, too_large, token, len(too_large)) == 413
    assert snapshot(served.url) == before
    at_limit = valid + b" " * (LIMIT - len(valid))
    assert _post_with_length(served, at_limit, token, len(at_limit)) == 201
    assert _post_with_length(served, valid, token, len(valid)) == 201


def test_a_content_length_of_thousands_of_digits_is_read_for_its_value_never_a_500(
    served: Served,
) -> None:
    # HTTP allows leading zeros, and granian passes the header on as sent; Python's int()
    # refuses over 4,300 digits, which was a 500 before any token was looked at.
    token = served.token("andrewbrown")
    valid = json.dumps({"message": "zeros first", "ttl": "1-hour"}).encode()
    padded = "Content-Length: " + "0" * 5_000 + str(len(valid))
    # Twice: a caller's first create goes through Flask, the next ones without (new_crud).
    assert [_post_raw(served, padded, [valid], token)[0] for _ in range(2)] == [201, 201]
    assert _post_raw(served, padded, [valid], "junk")[0] == 401
    status, created = _post_raw(served, f"Content-Length: {len(valid)}", [valid], token)
    assert status == 201, created
    reply = json.dumps({"message": "a reply"}).encode()
    replied = _post_raw(
        served, "Content-Length: " + "0" * 5_000 + str(len(reply)), [reply], token,
        path=f"/api/activities/{created['uuid']}/reply",
    )  # fmt: skip
    assert replied[0] == 201, replied
    sign_in = json.dumps({"handle": "andrewbrown"}).encode()
    signed = _post_raw(
        served, "Content-Length: " + "0" * 5_000 + str(len(sign_in)), [sign_in], token,
        path="/api/dev/sign-in",
    )  # fmt: skip
    assert signed[0] == 200, signed
    huge = _post_raw(served, "Content-Length: " + "9" * 5_000, [valid], token)
    assert huge[0] in (400, 413), huge


def test_a_transfer_coding_other_than_chunked_is_a_501_and_changes_nothing(
    served: Served,
) -> None:
    # The server undoes chunked framing only: `gzip, chunked` reached the app with the
    # body still coded, and a plain body sent so was stored (a 201).
    before = snapshot(served.url)
    token = served.token("andrewbrown")
    body = json.dumps({"message": "coded", "ttl": "1-hour"}).encode()
    framed = [b"%x\r\n%s\r\n" % (len(body), body), b"0\r\n\r\n"]
    for coding in ("gzip, chunked", "deflate,chunked", "identity, chunked"):
        status, answer = _post_raw(served, f"Transfer-Encoding: {coding}", framed, token)
        assert status == 501, (coding, answer)
        assert answer["error"] == "not_implemented"
    assert snapshot(served.url) == before


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_python_only_json_constants_are_a_400_and_change_nothing(
    served: Served, constant: str
) -> None:
    # Python's json reads them; JSON has none, and the crud was stored (a 201).
    token = served.token("andrewbrown")
    valid = json.dumps({"message": "known", "ttl": "1-hour"}).encode()
    # A write of the caller's first: known, its next writes take the app's fast way.
    assert _post_with_length(served, valid, token, len(valid)) == 201
    before = snapshot(served.url)
    body = b'{"message": "a", "ttl": "1-day", "x": %s}' % constant.encode()
    # The fast way, then the app (a chunked body gets a 411 first under granian).
    status, answer = _post_raw(served, f"Content-Length: {len(body)}", [body], token)
    assert status == 400, answer
    assert answer["error"] == "invalid_json"
    assert f"{constant} is not a JSON value" in answer["message"]
    assert snapshot(served.url) == before


def test_gunicorn_takes_a_whole_chunked_body_and_refuses_one_cut_off(
    seeded_db: str, tmp_path
) -> None:
    # Its body stream raises when a chunked body ends early (a 400), so it keeps taking
    # chunked bodies where granian answers 411 (above).
    from served import serve

    with serve(seeded_db, tmp_path, "--server", "gunicorn") as served:
        token = served.token("andrewbrown")
        whole = json.dumps({"message": "sent chunked", "ttl": "1-hour"}).encode()
        status, answer = _post_chunked(served, whole, token)
        assert status == 201 and answer["message"] == "sent chunked"
        before = snapshot(served.url)
        head = (
            "POST /api/activities HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        cut = b"100\r\n" + json.dumps({"message": "cut", "ttl": "1-hour"}).encode()
        status_line = _cut_off(served, head, cut, closed=False)
        assert not status_line.startswith(b"HTTP/1.1 2"), status_line
        # A review: a chunk size that is no number, or a chunk longer than it said, was a
        # 500 with a traceback in the log (gunicorn's InvalidChunkSize and
        # ChunkMissingTerminator); a 400, as any body that cannot be read.
        body = json.dumps({"message": "framed badly", "ttl": "1-hour"}).encode()
        for framed in (
            b"zz\r\n%s\r\n0\r\n\r\n" % body,
            b"%x\r\n%sxxxx\r\n0\r\n\r\n" % (len(body), body),
        ):
            status, answer = _post_raw(served, "Transfer-Encoding: chunked", [framed], token)
            assert status == 400, answer
            assert answer["error"] == "bad_request", answer
        assert snapshot(served.url) == before
        assert "Traceback" not in served.output
