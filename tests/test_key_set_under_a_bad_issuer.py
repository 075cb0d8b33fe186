"""The issuer's keys (api/keys.py) fetched from an issuer that misbehaves: a real HTTP
server on loopback that answers slowly, with a byte at a time, too much, or JSON that is
not a key set. Sign-ins fail with "unavailable" (503), within the fetch's bound, and an
issuer that is slow holds no more than the one thread fetching."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cruddur.api.keys import MAX_BYTES, KeySet, KeysUnavailable, UnknownKey
from cruddur.dev_keys import DevKeys


class Issuer:
    """What the server answers: `body`, after `delay` seconds, `drip` seconds apart per
    byte (0: all at once)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.delay = 0.0
        self.drip = 0.0
        self.fetches = 0
        self.redirect_to: str | None = None  # answer 302 with this Location instead
        self.stopping = threading.Event()


@pytest.fixture
def issuer(tmp_path) -> Iterator[tuple[Issuer, str, str]]:
    """The issuer, its URL, and the kid its good key set publishes."""
    keys = DevKeys(tmp_path).ensure()
    state = Issuer(keys.jwks_path.read_bytes())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            if state.stopping.wait(state.delay):
                return
            if state.redirect_to is not None and self.path == "/jwks.json":
                self.send_response(302)
                self.send_header("Location", state.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            if not state.drip:
                self.wfile.write(state.body)
                return
            for byte in state.body:
                if state.stopping.wait(state.drip):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/jwks.json", keys.kid()
    state.stopping.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("body", [b"[]", b"5", b"[" * 100_000 + b"]" * 100_000, b"{}"])
def test_json_that_is_not_a_key_set_is_unavailable_then_read_again(issuer, body) -> None:
    # `[]` or `5` raised AttributeError inside PyJWT (a 500), deep nesting RecursionError,
    # and the key set then answered "unknown key" (a 401: drop your token) for a minute.
    state, url, kid = issuer
    good, state.body = state.body, body
    keys = KeySet(url, retry_after_failure=0)
    with pytest.raises(KeysUnavailable):
        keys.get(kid)
    with pytest.raises(KeysUnavailable):  # not UnknownKey: the token may be fine
        keys.get(kid)
    state.body = good
    assert keys.get(kid) is not None


def test_an_answer_over_the_limit_is_refused(issuer) -> None:
    state, url, kid = issuer
    state.body = b'{"keys": [], "padding": "' + b"x" * MAX_BYTES + b'"}'
    with pytest.raises(KeysUnavailable, match="over 64 kB"):
        KeySet(url).get(kid)


def test_an_answer_dripping_in_is_given_up_within_the_fetchs_bound(issuer) -> None:
    # The socket's timeout bounds each read: a byte every 0.5 s never trips it, and a
    # 1 kB key set took its ~9 minutes; every sign-in waited behind it.
    state, url, kid = issuer
    state.drip = 0.5
    started = time.monotonic()
    with pytest.raises(KeysUnavailable, match="took over 1 s"):
        KeySet(url, timeout=1.0).get(kid)
    assert time.monotonic() - started < 4  # the bound (1 s), and one read's timeout


def test_a_slow_fetch_holds_only_its_own_thread(issuer) -> None:
    # Every thread that needed a key waited on the fetching one's lock, then fetched
    # again itself: four forged tokens held a worker's four threads for a minute.
    state, url, kid = issuer
    keys = KeySet(url, timeout=3.0, min_refresh=0)
    assert keys.get(kid) is not None  # the keys are here
    state.delay = 2.0  # the issuer turns slow
    answers: list[BaseException] = []

    def forged() -> None:
        try:
            keys.get("forged")
        except (UnknownKey, KeysUnavailable) as exc:
            answers.append(exc)

    fetching = threading.Thread(target=forged)
    fetching.start()
    while state.fetches < 2:  # the forged kid's refetch is under way
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(KeysUnavailable, match="being fetched"):
        keys.get("another-forged-kid")
    assert keys.get(kid) is not None  # a known key never waits
    assert time.monotonic() - started < 1
    fetching.join()
    assert state.fetches == 2
    assert [type(answer) for answer in answers] == [UnknownKey]  # the slow fetch's own answer


def test_after_a_failed_fetch_the_next_waits_from_its_end(issuer) -> None:
    # Timed from the failed fetch's start, a fetch that took longer than the wait was
    # followed at once by the next request's: one fetch after another, each as slow.
    state, url, kid = issuer
    state.drip = 0.2
    keys = KeySet(url, timeout=1.0, retry_after_failure=1.5)
    with pytest.raises(KeysUnavailable):
        keys.get(kid)
    with pytest.raises(KeysUnavailable):
        keys.get(kid)
    assert state.fetches == 1


def test_a_redirect_is_unavailable_and_its_keys_are_never_taken(issuer) -> None:
    # urlopen followed a 302 to wherever it pointed (another host, http:// after
    # https://) and took the signing keys it found there: a token signed with those was
    # accepted for any user.
    state, url, kid = issuer
    state.redirect_to = url.replace("/jwks.json", "/elsewhere.json")  # serves the keys
    keys = KeySet(url, retry_after_failure=0)
    with pytest.raises(KeysUnavailable, match="answered 302, a redirect"):
        keys.get(kid)
    assert state.fetches == 1  # the place it pointed at was never asked
    state.redirect_to = None
    assert keys.get(kid) is not None


def test_what_it_says_of_the_key_set_url_leaves_out_its_query_and_password(issuer) -> None:
    # Its messages go to the log: a presigned URL's signature (in the query) was logged
    # whole whenever the issuer failed.
    state, url, kid = issuer
    secret = "X-Amz-Signature=0123456789abcdef"
    state.body = b"not json"
    with pytest.raises(KeysUnavailable) as failed:
        KeySet(f"{url}?{secret}").get(kid)
    assert "/jwks.json" in str(failed.value) and secret not in str(failed.value)
    state.body = b'{"keys": [], "padding": "' + b"x" * MAX_BYTES + b'"}'
    with pytest.raises(KeysUnavailable, match="over 64 kB") as failed:
        KeySet(f"{url}?{secret}").get(kid)
    assert secret not in str(failed.value)
    # Nor where the error's own text repeats it: urllib quotes a path it refuses, and a
    # file that is not there.
    for odd in (f"{url}?{secret} x", f"file:///nonexistent/jwks.json?{secret}"):
        with pytest.raises(KeysUnavailable) as failed:
            KeySet(odd).get(kid)
        assert secret not in str(failed.value), str(failed.value)
