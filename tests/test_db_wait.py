"""`cruddur db wait`: until the server accepts connections, and no longer than asked."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import ROOT, as_role, free_port, run, silent_port

from cruddur.urls import parse

CRUDDUR = ROOT / ".venv/bin/cruddur"


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """One direction, until its end closes; then the other end hears of it. Closing both
    sockets is for whoever runs both directions: closed here, the other direction's recv
    found its socket gone (EBADF, an unhandled exception in its thread)."""
    with contextlib.suppress(OSError):  # a reset: this direction is over as well
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def late_server(empty_db: str) -> Iterator[str]:
    """The test database behind a port that starts forwarding to it 1.5 s from now, as a
    server that is still starting up would."""
    port = free_port()
    real = parse(empty_db)

    def serve() -> None:
        time.sleep(1.5)
        with socket.create_server(("127.0.0.1", port)) as listener:
            listener.settimeout(10)
            client, _ = listener.accept()
            upstream = socket.create_connection((real["host"], int(real["port"])))
            with client, upstream:
                back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
                back.start()
                _pipe(client, upstream)
                back.join(timeout=10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    params = {**real, "host": "127.0.0.1", "port": str(port)}
    yield " ".join(f"{key}='{value}'" for key, value in params.items())
    thread.join(timeout=15)


def test_wait_returns_once_the_server_accepts_connections(late_server: str) -> None:
    started = time.monotonic()
    waited = run(CRUDDUR, "db", "wait", "--timeout", "20", env={"CONNECTION_URL": late_server})
    assert waited.returncode == 0, waited.stderr
    assert time.monotonic() - started >= 1.5
    assert "accepts connections" in waited.stderr + waited.stdout


def test_wait_gives_up_after_its_timeout_with_a_hint() -> None:
    url = f"postgresql://postgres:secret-pw@127.0.0.1:{free_port()}/cruddur"
    waited = run(CRUDDUR, "db", "wait", "--timeout", "1", env={"CONNECTION_URL": url})
    assert waited.returncode == 1
    assert "secret-pw" not in waited.stderr + waited.stdout
    assert "is the server running" in waited.stderr
    # It said nothing of waiting. (The seconds are rounded: tries on a busy machine end late.)
    assert re.search(r"gave up after \d+ s \(--timeout 1\)", waited.stderr), waited.stderr


def test_wait_shows_it_is_waiting_on_a_terminal() -> None:
    # Up to 60 s of silence on a terminal before; now a line that counts the seconds.
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/cruddur"
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [str(CRUDDUR), "db", "wait", "--timeout", "2"],
        env={**_env_without_urls(), "CONNECTION_URL": url, "TERM": "xterm"},
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
    ) as process:  # fmt: skip
        os.close(follower)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the process has closed its end
            while chunk := os.read(leader, 65536):
                shown += chunk
        process.wait(timeout=30)
    os.close(leader)
    assert process.returncode == 1
    assert b"waiting for the database" in shown and b"s of 2" in shown, shown


def test_the_count_goes_on_while_a_try_hangs() -> None:
    # A review: against a server that never answers, the line read "0 s of 12" for 5 s
    # (one try's connect timeout), then jumped: it was updated between tries only.
    with silent_port() as port:
        url = f"postgresql://postgres@127.0.0.1:{port}/cruddur"
        leader, follower = pty.openpty()
        with subprocess.Popen(
            [str(CRUDDUR), "db", "wait", "--timeout", "3"],
            env={**_env_without_urls(), "CONNECTION_URL": url, "TERM": "xterm",
                 "CRUDDUR_CONNECT_TIMEOUT": "3"},
            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
        ) as process:  # fmt: skip
            os.close(follower)
            shown = b""
            with contextlib.suppress(OSError):
                while chunk := os.read(leader, 65536):
                    shown += chunk
            process.wait(timeout=30)
        os.close(leader)
    counts = set(re.findall(rb"(\d+) s of 3", shown))
    assert {b"1", b"2"} <= counts, shown
    assert not any(int(count) > 3 for count in counts), shown  # not past the timeout


def _env_without_urls() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.endswith("CONNECTION_URL")}


def test_wait_stops_at_once_for_a_wrong_password(
    empty_db: str, login_role: str, needs_password_checks: None
) -> None:
    url = as_role(empty_db, login_role, "wrong-password")
    started = time.monotonic()
    waited = run(CRUDDUR, "db", "wait", "--timeout", "30", env={"CONNECTION_URL": url})
    assert waited.returncode == 1
    assert time.monotonic() - started < 15  # not the whole 30 s: waiting cannot fix this
    assert "password" in waited.stderr


def test_a_timeout_that_is_no_number_is_refused_instead_of_waiting_for_ever() -> None:
    # click.FloatRange(0) let nan through; `elapsed >= nan` is never true, so on a server
    # that was not there the wait never ended.
    nowhere = {"CONNECTION_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/cruddur"}
    started = time.monotonic()
    result = run(CRUDDUR, "db", "wait", "--timeout", "nan", env=nowhere)
    assert time.monotonic() - started < 30
    assert result.returncode == 2
    assert "'nan' is not a number of seconds" in result.stderr


def test_wait_gives_up_within_its_timeout_however_long_one_try_may_take() -> None:
    # Each try waited the whole CRUDDUR_CONNECT_TIMEOUT: --timeout 2 gave up after 15 s.
    with silent_port() as port:
        url = f"postgresql://postgres@127.0.0.1:{port}/cruddur"
        started = time.monotonic()
        waited = run(
            CRUDDUR, "db", "wait", "--timeout", "2",
            env={"CONNECTION_URL": url, "CRUDDUR_CONNECT_TIMEOUT": "15"},
        )  # fmt: skip
        took = time.monotonic() - started
    assert waited.returncode == 1, waited.stderr
    assert "--timeout 2" in waited.stderr
    assert took < 8, took  # 2 s, and libpq's fewest seconds for one try (2); slack for start-up


def test_db_connect_gives_up_on_a_server_that_never_answers() -> None:
    # psql had no connect timeout: it waited on such a server for the kernel's TCP timeout.
    with silent_port() as port:
        url = f"postgresql://postgres@127.0.0.1:{port}/cruddur"
        try:
            done = subprocess.run(
                [str(CRUDDUR), "db", "connect", "--", "-c", "SELECT 1"],
                env={**os.environ, "CONNECTION_URL": url, "CRUDDUR_CONNECT_TIMEOUT": "2"},
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail("db connect was still waiting after 20 s")
    assert done.returncode != 0
    assert "timeout" in done.stderr, done.stderr
