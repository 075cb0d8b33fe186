"""`cruddur serve` as an operator meets it: a taken port, a stop signal at any moment."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import math
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import ROOT
from server_support import Served, free_port, request

from cruddur import ports
from cruddur.config import Settings
from cruddur.dev_keys import DevKeys
from cruddur.ports import PortTaken, claim, lock_file, lock_path, sweep
from cruddur.safe_paths import private_folder
from cruddur.serving import WORKERS_KILL_TIMEOUT

TRIALS = 20
SOCKETS = 2_000  # idle ones, and as many sending their headers a byte at a time (issue 10)
FEED_P99_BOUND = 0.1  # seconds: a normal client's feed meanwhile (issue 10)
SLOW_REQUEST = b"GET /api/activities/home HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
# Moments of start-up, in order: the CLI has started granian; granian has forked a
# worker, which is loading the app; both are; one has installed its own handlers.
# From serve's first line (it checks the database and settings before granian starts).
EARLY_MARKS = (
    "database:", "server: granian", "Starting granian", "Spawning worker-1",
    "Spawning worker-2", "Started worker-1",
)  # fmt: skip
CTRL_C_TRIALS = 6
# Seconds from Ctrl-C to the whole server gone: less than granian's kill timeout, so a
# worker that never stops fails the test rather than only slowing it.
CTRL_C_STOPS_WITHIN = 3


def _env(seeded_db: str, home) -> dict[str, str]:
    return {"CONNECTION_URL": seeded_db, "CRUDDUR_HOME": str(home)}


def _refused_at_once(second: Served) -> str:
    try:
        second.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a second server started on a taken port:\n{second.output}")
    finally:
        second.kill_all()
    assert second.process.returncode == 1
    time.sleep(0.1)  # the reader thread's last lines
    return second.output


def test_a_second_server_on_a_taken_port_refuses_at_once(seeded_db: str, tmp_path) -> None:
    first = Served("--workers", "1", env=_env(seeded_db, tmp_path / "a"))
    try:
        first.wait_healthy()
        # The same checkout: its lock says so before anything else happens.
        same = _refused_at_once(Served(env=_env(seeded_db, tmp_path / "a"), port=first.port))
        assert same.strip().count("\n") == 0, same  # one line
        assert f"port {first.port} on 127.0.0.1 is already served" in same
        # Another checkout (another lock): the port itself is found taken.
        other = _refused_at_once(Served(env=_env(seeded_db, tmp_path / "b"), port=first.port))
        assert other.strip().count("\n") == 0, other
        assert f"Error: port {first.port} on 127.0.0.1 is already in use" in other
        assert "--port" in other and "Traceback" not in other
        assert first.get("/api/health") == 200
    finally:
        first.stop()


def test_a_server_of_another_home_starting_meanwhile_refuses_at_once(
    seeded_db: str, tmp_path
) -> None:
    # The first is held up before it listens (its database check against a listener
    # that never answers); the second, of another checkout, passed the bind check then,
    # and granian's SO_REUSEPORT let both serve the port, split between two databases.
    silent = socket.create_server(("127.0.0.1", 0))
    stuck_url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/cruddur"
    first = Served(
        env={"CONNECTION_URL": stuck_url, "CRUDDUR_HOME": str(tmp_path / "a"),
             "CRUDDUR_CONNECT_TIMEOUT": "5"},
    )  # fmt: skip
    try:
        assert first.saw("database:"), first.output  # past its claim, before it listens
        second = _refused_at_once(Served(env=_env(seeded_db, tmp_path / "b"), port=first.port))
        assert second.strip().count("\n") == 0, second
        assert f"port {first.port} on 127.0.0.1 is held by another `cruddur serve`" in second
    finally:
        first.stop()
        silent.close()
    # Once the first has stopped, its hold is gone with it.
    third = Served("--workers", "1", env=_env(seeded_db, tmp_path / "b"), port=first.port)
    try:
        third.wait_healthy()
    finally:
        third.stop()


@pytest.mark.parametrize(
    ("given", "bound"),
    [("localhost", "127.0.0.1"), ("127.1", "127.0.0.1"), ("0", "0.0.0.0"), ("[::1]", "::1")],
)
def test_a_host_name_or_short_address_is_bound_as_its_address(given: str, bound: str) -> None:
    # granian takes addresses only: `--host localhost` printed "serving" and then failed
    # with a traceback ("invalid IP address syntax").
    assert ports.bindable_host(given) == bound


def test_serve_on_localhost_answers_and_says_where(seeded_db: str, tmp_path) -> None:
    served = Served("--workers", "1", "--host", "localhost", env=_env(seeded_db, tmp_path))
    try:
        served.wait_healthy()
    finally:
        output = served.stop()
    assert f"serving http://127.0.0.1:{served.port}/ (the web page)" in output
    assert "Traceback" not in output
    assert ports.url_host("::1") == "[::1]" and ports.url_host("127.0.0.1") == "127.0.0.1"


def test_a_home_made_under_a_group_writable_umask_is_still_served(tmp_path) -> None:
    # The port's lock made the home first, with mkdir's umask-masked mode (0775 under
    # Ubuntu's umask 002); the dev keys' check then refused the home it had just made.
    home = tmp_path / "home"
    before = os.umask(0o002)
    try:
        os.close(claim("127.0.0.1", free_port(), home))
        DevKeys(home).ensure()
    finally:
        os.umask(before)
    assert oct(home.stat().st_mode & 0o777) == oct(0o755)
    # Folders made on the way to it get the same mode, not the umask's (027 here).
    deep = tmp_path / "a" / "b" / "home"
    before = os.umask(0o027)
    try:
        private_folder(deep, 0o755)
    finally:
        os.umask(before)
    modes = [oct(p.stat().st_mode & 0o777) for p in (deep.parent.parent, deep.parent, deep)]
    assert modes == [oct(0o755)] * 3


def test_a_stopped_servers_lock_file_is_removed_and_a_running_ones_kept(tmp_path) -> None:
    # One file per host and port used piled up in .cruddur/: the server `exec`s, so
    # nothing removes its file when it stops. The next claim sweeps the stopped ones'.
    first_port, second_port = free_port(), free_port()
    first = claim("127.0.0.1", first_port, tmp_path)
    running = claim("127.0.0.1", second_port, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"serve-127.0.0.1-{first_port}.lock", f"serve-127.0.0.1-{second_port}.lock"]
    )
    os.close(first)  # that server stopped
    again = claim("127.0.0.1", first_port, tmp_path)  # a restart on its port: fine
    os.close(again)
    third_port = free_port()
    os.close(claim("127.0.0.1", third_port, tmp_path))  # swept the first one's
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"serve-127.0.0.1-{second_port}.lock", f"serve-127.0.0.1-{third_port}.lock"]
    )
    assert sweep(tmp_path) == 1  # the third's; the running server's stays
    assert [p.name for p in tmp_path.iterdir()] == [f"serve-127.0.0.1-{second_port}.lock"]
    with pytest.raises(PortTaken, match=f"port {second_port} on 127.0.0.1 is already served"):
        claim("127.0.0.1", second_port, tmp_path)
    os.close(running)
    assert sweep(tmp_path) == 1 and not list(tmp_path.iterdir())


@pytest.mark.parametrize("host", ["nosuchhost.invalid", "é", "x" * 300, "../x/y"])
def test_a_host_that_does_not_resolve_is_one_line(tmp_path, host: str) -> None:
    # It was "unexpected gaierror: [Errno -2] Name or service not known".
    refused = Served("--host", host, env={"CRUDDUR_HOME": str(tmp_path)})
    output = _refused_at_once(refused)
    assert f"Error: cannot listen on {host!r}: no such host name" in output
    assert "--host" in output and "unexpected" not in output
    # Its lock file (named by a digest when the host cannot be part of a file name)
    # stayed in the folder, and was swept: it never held a server.
    assert [p.name for p in tmp_path.iterdir()] in (["auth"], [])


@pytest.mark.parametrize("host", ["fe80::1", "fe80::1%lo", "febf::1"])
def test_a_link_local_address_it_cannot_listen_on_is_one_line(tmp_path, host: str) -> None:
    # It was "unexpected OSError: [Errno 22] Invalid argument".
    refused = Served("--host", host, env={"CRUDDUR_HOME": str(tmp_path)})
    output = _refused_at_once(refused)
    # (It advised adding the interface, which the servers cannot be given.)
    assert f"cannot listen on {host}: a link-local address is not supported" in output, output
    assert "unexpected" not in output


def test_a_claim_racing_sweeps_never_gives_two_servers_one_port(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sweep removes a file while a claim may have it open: the claim must then lock the
    # file now at the path, never an orphan another claim cannot see. (The lock alone:
    # claim's bind check could meet another program on the machine taking the port.)
    path = lock_path("127.0.0.1", free_port(), tmp_path)
    stop = threading.Event()

    def sweeping() -> None:
        while not stop.is_set():
            sweep(tmp_path)

    sweeper = threading.Thread(target=sweeping)
    sweeper.start()
    try:
        for _ in range(200):
            held = lock_file(path)
            assert held is not None  # a sweep's lock lasts an instant: retried
            try:
                # Held: refused, whatever the sweeps did. No sweep can take a held lock,
                # so its retries need no pause (4 of 10 ms each: 8 s over the 200 turns).
                with monkeypatch.context() as quick:
                    quick.setattr(ports, "LOCK_RETRY_PAUSE", 0)
                    assert lock_file(path) is None
            finally:
                os.close(held)
    finally:
        stop.set()
        sweeper.join()


def test_one_signal_always_stops_the_server_and_all_its_workers(seeded_db: str, tmp_path) -> None:
    # 20 starts in a row, every other one stopped early (at each of EARLY_MARKS in turn)
    # and the others once it answers; SIGINT and SIGTERM take turns in both. The last ten
    # start as a script's background job does, with both signals ignored: that went
    # through exec, and a SIGINT as granian started was lost (3 CI runs in 3).
    for trial in range(TRIALS):
        early = trial % 2 == 0
        stop = (signal.SIGINT, signal.SIGTERM)[(trial // 2) % 2]
        served = Served(
            "--workers", "2", "--threads", "1",
            env=_env(seeded_db, tmp_path), stops_ignored=trial >= TRIALS // 2,
        )  # fmt: skip
        try:
            if early:
                mark = EARLY_MARKS[(trial // 2) % len(EARLY_MARKS)]
                assert served.saw(mark), served.output
            else:
                served.wait_healthy()
            # Not by the kill timeout: a worker stopped as it starts ends at once
            # (cruddur.granian_main), not 5 s later when granian kills it.
            _stopped_before_the_kill_timeout(served, stop, f"trial {trial}: {stop.name}")
            deadline = time.monotonic() + 5
            while served.leftovers() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not served.leftovers(), f"trial {trial}: workers left:\n{served.output}"
        finally:
            served.kill_all()


def _stopped_before_the_kill_timeout(
    served: Served, stop: signal.Signals, what: str, *, group: bool = False
) -> None:
    """Send `stop` to the server's main process (or its whole group, as a terminal's
    Ctrl-C does); it must be gone within WORKERS_KILL_TIMEOUT."""
    sent = time.monotonic()
    if group:
        os.killpg(served.process.pid, stop)
    else:
        served.process.send_signal(stop)
    try:
        served.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not stop the server:\n{served.output}")
    took = time.monotonic() - sent
    assert took < WORKERS_KILL_TIMEOUT, f"{what}: {took:.2f} s\n{served.output}"


@pytest.mark.parametrize(
    ("server", "marks"),
    [
        (
            "granian",
            ("Starting granian", "Spawning worker-1", "Started worker-1", "Started worker-4") * 2,
        ),
        ("gunicorn", ("Booting worker",) * 6),
    ],
    ids=["granian", "gunicorn"],
)
def test_a_ctrl_c_as_workers_start_is_a_clean_stop(
    seeded_db: str, tmp_path, server: str, marks: tuple[str, ...]
) -> None:
    # A review, a Ctrl-C (SIGINT to the whole group) the moment a worker was forked:
    # under granian the worker died of it before the main process stopped it, which
    # counted as a crash ("Unexpected exit from worker-1", exit status 1, every trial
    # with 8 workers), and so did a worker that had just started and stopped itself
    # gracefully before the main process stopped it (3 trials in 6); under gunicorn a
    # worker that had not installed its handlers yet lost it, and the main process's
    # SIGQUIT after it, and was killed 10 s later ("was sent SIGKILL!", 1 trial in 8),
    # or printed a traceback. And as granian started, before its handlers, click's
    # "Aborted!" and exit status 1.
    for trial, mark in enumerate(marks):
        served = Served(
            "--server", server, "--workers", "8", "--threads", "1",
            env=_env(seeded_db, tmp_path),
        )  # fmt: skip
        try:
            assert served.saw(mark), served.output
            _stopped_before_the_kill_timeout(
                served, signal.SIGINT, f"trial {trial}: a Ctrl-C", group=True
            )
            # 130 before granian's handlers are in (a KeyboardInterrupt), 0 after.
            assert served.process.returncode in (0, 130), f"trial {trial}:\n{served.output}"
            for wrong in ("Unexpected exit", "SIGKILL", "Traceback", "Aborted!"):
                assert wrong not in served.output, f"trial {trial}:\n{served.output}"
        finally:
            served.kill_all()


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_a_hang_up_stops_the_server_unless_it_was_started_to_ignore_it(
    seeded_db: str, tmp_path, server: str
) -> None:
    # A terminal that closes sends SIGHUP to its foreground group: granian and gunicorn
    # took it for "respawn the workers", and the server went on with no terminal, no one
    # to stop it, and its port held (the next `cruddur serve` refused the port).
    served = Served("--server", server, "--workers", "2", env=_env(seeded_db, tmp_path))
    try:
        served.wait_healthy()
        os.killpg(served.process.pid, signal.SIGHUP)
        try:
            served.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGHUP did not stop the server:\n{served.output}")
        deadline = time.monotonic() + 5
        while served.leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not served.leftovers(), served.output
    finally:
        served.kill_all()
    # Under nohup (SIGHUP ignored on entry) it serves on.
    kept = Served(
        "--server", server, "--workers", "2", env=_env(seeded_db, tmp_path), hang_up_ignored=True
    )  # fmt: skip
    try:
        kept.wait_healthy()
        _workers_of(kept, 2)  # both booted: one answering is not both there
        before = set(kept.leftovers())
        os.killpg(kept.process.pid, signal.SIGHUP)
        time.sleep(1.5)
        assert kept.process.poll() is None, kept.output
        assert request(f"{kept.base}/api/health")[0] == 200
        # Its workers too: gunicorn's had SIGHUP's default action back, and all died at
        # once (and were replaced), requests in flight and all.
        assert set(kept.leftovers()) == before, kept.output
        assert "was sent SIGHUP" not in kept.output
    finally:
        kept.stop()


def test_ctrl_c_stops_the_server_and_all_its_workers_at_once(seeded_db: str, tmp_path) -> None:
    # A terminal's Ctrl-C sends SIGINT to its whole foreground group: granian's main
    # process and every worker at once, and the main process then sends each worker a
    # SIGTERM of its own. A worker sent two stop signals that close together often ran
    # no handler for either (the kernel gave both to another of its threads), and the
    # main process killed it after its kill timeout: 5 s and "refused to gracefully stop"
    # (3 trials in 6). A server that has served writes, its workers and their threads
    # all started, must stop whole within a few seconds of one Ctrl-C. (That line itself
    # is not a test: granian sometimes prints it for a worker that has exited, when a
    # watcher thread of its own reaped the worker a moment before its main thread looked.
    # A stop in a worker's first few ms, before cruddur.worker runs, ends it at once:
    # cruddur.granian_main gives every forked worker the default actions.)
    assert CTRL_C_STOPS_WITHIN < WORKERS_KILL_TIMEOUT
    env = _env(seeded_db, tmp_path)
    token = DevKeys(tmp_path).ensure().mint(Settings.from_env(env).auth, "MOCK-andrewbrown")
    write = {
        "method": "POST",
        "headers": {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    }
    stops, failed = [], []
    for trial in range(CTRL_C_TRIALS):
        served = Served("--workers", "2", "--threads", "4", env=env)
        try:
            served.wait_healthy()  # one worker answers; both must be serving
            assert served.saw("Started worker-1") and served.saw("Started worker-2"), served.output
            for n in range(4):
                body = json.dumps({"message": f"before Ctrl-C {trial}.{n}", "ttl": "1-hour"})
                status, _, answer = request(
                    f"{served.base}/api/activities", data=body.encode(), **write
                )
                assert status == 201, answer
            pressed = time.monotonic()
            os.killpg(served.process.pid, signal.SIGINT)  # Served gives it its own group
            with contextlib.suppress(subprocess.TimeoutExpired):
                served.process.wait(timeout=CTRL_C_STOPS_WITHIN)
            while served.leftovers() and time.monotonic() < pressed + CTRL_C_STOPS_WITHIN:
                time.sleep(0.05)
            took, left = time.monotonic() - pressed, served.leftovers()
        finally:
            output = served.stop()
        stops.append(f"{took:.2f}")
        if left:
            failed.append(f"trial {trial}: {left} still running after {took:.2f} s:\n{output}")
    assert not failed, f"{len(failed)} of {CTRL_C_TRIALS} (s: {stops}):\n" + "\n".join(failed)


def _closed_within(sockets: list[socket.socket], seconds: float) -> int:
    """Wait for the server to close these sockets; how many it closed."""
    deadline = time.monotonic() + seconds
    open_ = {sock.fileno(): sock for sock in sockets}
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        while open_ and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                sock = open_.pop(key.fd)
                selector.unregister(sock)
                with contextlib.suppress(OSError):  # b"" (closed), or an error page
                    sock.recv(1024)
    return len(sockets) - len(open_)


def test_idle_and_slow_sockets_are_closed_after_the_header_timeout(
    seeded_db: str, tmp_path
) -> None:
    timeout = 2  # CRUDDUR_HEADER_TIMEOUT, seconds
    env = {**_env(seeded_db, tmp_path), "CRUDDUR_HEADER_TIMEOUT": str(timeout)}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * SOCKETS + 200:  # this process holds them all
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    served = Served("--workers", "2", "--threads", "2", env=env)
    idle: list[socket.socket] = []
    slow: list[socket.socket] = []
    feed: list[tuple[int, float]] = []  # a normal client's (status, seconds) meanwhile
    sending = threading.Event()

    def normal_client() -> None:
        while sending.is_set():
            started = time.monotonic()
            status = served.get("/api/activities/home")
            feed.append((status, time.monotonic() - started))
            time.sleep(0.01)

    client = threading.Thread(target=normal_client)
    try:
        served.wait_healthy()
        for _ in range(SOCKETS):
            idle.append(socket.create_connection(("127.0.0.1", served.port)))
            slow.append(socket.create_connection(("127.0.0.1", served.port)))
        opened = time.monotonic()
        sending.set()
        client.start()
        # A byte every 0.2 s: each slow socket would take 8 s to finish its headers.
        for byte in SLOW_REQUEST[:10]:
            for sock in slow:
                with contextlib.suppress(OSError):  # closed by the server already
                    sock.send(bytes([byte]))
            time.sleep(0.2)
        sending.clear()
        client.join()
        assert len(feed) >= 20 and {status for status, _ in feed} == {200}, feed
        seconds = sorted(took for _, took in feed)
        p99 = seconds[math.ceil(0.99 * len(seconds)) - 1]
        print(f"feed among {2 * SOCKETS} sockets: {len(feed)} requests, p99 {p99 * 1000:.1f} ms")
        assert p99 < FEED_P99_BOUND, seconds[-5:]
        spare = 3
        # (Sockets closed already are readable at once: a short wait still counts them.)
        wait = max(0.5, opened + timeout + spare - time.monotonic())
        closed = _closed_within(idle + slow, wait)
        assert closed == 2 * SOCKETS, f"{2 * SOCKETS - closed} sockets still open"
        assert served.get("/api/activities/home") == 200
        # Headers are bounded in size too (granian took 200 kB of them by default).
        assert _status_with_header(served.port, 16_000) == 200
        assert _status_with_header(served.port, 200_000) == 431
    finally:
        sending.clear()
        if client.is_alive():
            client.join()
        for sock in idle + slow:
            sock.close()
        served.stop()


def _status_with_header(port: int, size: int) -> int:
    """The status of a feed request that carries one header of `size` bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # refused before it was all sent
            sock.sendall(
                b"GET /api/activities/home HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + b"X-Padding: "
                + b"p" * size
                + b"\r\nConnection: close\r\n\r\n"
            )
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(65536):
                answer += data
    return int(answer.split()[1])


def test_the_header_timeout_must_be_one_granian_takes() -> None:
    from cruddur.config import ConfigError, Settings

    assert Settings.from_env({}).serve.header_timeout == 10
    assert Settings.from_env({"CRUDDUR_HEADER_TIMEOUT": "2.5"}).serve.header_timeout == 2.5
    with pytest.raises(ConfigError, match="at most 60"):
        _ = Settings.from_env({"CRUDDUR_HEADER_TIMEOUT": "61"}).serve  # checked on use


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_bodies_sent_slowly_leave_a_thread_for_everyone_else(
    seeded_db: str, tmp_path, framing: str
) -> None:
    # A signed-in client sends a write's headers, then a body that never ends, on many
    # sockets: each such request holds a thread. Chunked, it sends exactly the size
    # limit and stalls (the server then reads on, to tell whether the body is over it).
    # Reads and health still get a thread, and another writer is answered at once
    # (stored, or a 503 to send again), never left waiting behind them.
    env = _env(seeded_db, tmp_path)
    served = Served("--workers", "1", "--threads", "4", env=env)
    held: list[socket.socket] = []
    try:
        served.wait_healthy()
        settings = Settings.from_env(env)
        token = DevKeys(tmp_path).ensure().mint(settings.auth, "MOCK-andrewbrown")
        head = (
            "POST /api/activities HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        ).encode()
        if framing == "chunked":
            limit = 16 * 1024  # MAX_BODY_BYTES
            head += b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % limit + b" " * limit + b"\r\n"
        else:
            head += b'Content-Length: 1000\r\n\r\n{"message":'
        for _ in range(16):
            sock = socket.create_connection(("127.0.0.1", served.port))
            sock.sendall(head)
            held.append(sock)
        time.sleep(0.5)  # their headers are in: each is a thread's request now
        for path in ("/api/health", "/api/activities/home") * 3:
            assert served.get(path, timeout=2) == 200, path
        body = json.dumps({"message": "sent whole", "ttl": "1-hour"}).encode()
        write = urllib.request.Request(
            f"{served.base}/api/activities",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        sent = time.monotonic()
        try:
            with urllib.request.urlopen(write, timeout=2) as answer:
                assert answer.status == 201
        except urllib.error.HTTPError as refused:
            assert refused.code == 503 and refused.headers["Retry-After"] == "1"
        assert time.monotonic() - sent < 1  # answered, not kept waiting for a slot
    finally:
        for sock in held:
            sock.close()
        served.kill_all()


def test_metrics_on_the_api_port_is_refused_in_one_line(seeded_db: str, tmp_path) -> None:
    port = free_port()
    env = {**_env(seeded_db, tmp_path), "CRUDDUR_METRICS_PORT": str(port)}
    refused = Served(env=env, port=port)
    output = _refused_at_once(refused)
    assert output.strip().count("\n") == 0, output
    assert f"CRUDDUR_METRICS_PORT is {port}, the port the API serves on" in output


def test_a_metrics_port_that_is_taken_is_refused_before_serving_is_said(
    seeded_db: str, tmp_path
) -> None:
    # The refusal came after the banner ("serving http://…"), as if the API were up.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics_port = taken.getsockname()[1]
        env = {**_env(seeded_db, tmp_path), "CRUDDUR_METRICS_PORT": str(metrics_port)}
        output = _refused_at_once(Served(env=env))
    assert output.strip().count("\n") == 0, output
    assert f"metrics: cannot listen on 127.0.0.1:{metrics_port}" in output, output
    assert "(CRUDDUR_METRICS_HOST, CRUDDUR_METRICS_PORT)" in output  # either may be wrong
    assert "serving" not in output


def _exporter_of(served: Served) -> int:
    found = subprocess.run(
        ["pgrep", "-f", f"cruddur.telemetry.exporter.*--parent {served.process.pid}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    assert len(found) == 1, (found, served.output)
    return int(found[0])


def _counts_folder(pid: int) -> str:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return args[args.index(b"--dir") + 1].decode()


def test_an_exporter_that_stops_early_leaves_the_workers_their_counts(
    seeded_db: str, tmp_path
) -> None:
    # The exporter removed the counts folder as it stopped, though the server ran on: the
    # next worker to start (after a crash) failed on a missing file, and granian, seeing
    # a crash loop, stopped the whole server.
    env = {**_env(seeded_db, tmp_path), "CRUDDUR_METRICS_PORT": str(free_port())}
    served = Served("--workers", "2", "--threads", "1", env=env)
    try:
        served.wait_healthy()
        exporter = _exporter_of(served)
        folder = _counts_folder(exporter)
        os.kill(exporter, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{exporter}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Path(folder).is_dir()  # the workers' still
        workers = [pid for pid in served.leftovers() if pid not in (served.process.pid,)]
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(2)  # granian replaces it
        for _ in range(20):
            assert request(f"{served.base}/api/health")[0] == 200, served.output
        assert served.process.poll() is None, served.output
        assert "Traceback" not in served.output, served.output
    finally:
        served.stop()
    assert not Path(folder).exists()  # the server's main process removed it as it ended


def test_a_server_killed_outright_leaves_no_counts_folder(seeded_db: str, tmp_path) -> None:
    # granian's main process has threads: each that ended sent the exporter a SIGTERM
    # (PR_SET_PDEATHSIG), the first while the server was still its parent (so it kept the
    # folder), the next cutting its exit short: the folder stayed in /tmp for good.
    env = {**_env(seeded_db, tmp_path), "CRUDDUR_METRICS_PORT": str(free_port())}
    served = Served("--workers", "2", "--threads", "1", env=env)
    try:
        served.wait_healthy()
        exporter = _exporter_of(served)
        folder = Path(_counts_folder(exporter))
        os.kill(served.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (Path(f"/proc/{exporter}").exists() or folder.exists()) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert not Path(f"/proc/{exporter}").exists()
        assert not folder.exists()
    finally:
        served.kill_all()


def test_a_server_started_again_at_once_gets_its_metrics_port(seeded_db: str, tmp_path) -> None:
    # The exporter looked for its server every 0.5 s: it held the port that long after
    # the server ended, and a restart at once failed "Address already in use" (1 in 4).
    env = {**_env(seeded_db, tmp_path), "CRUDDUR_METRICS_PORT": str(free_port())}
    port = free_port()
    for _ in range(3):
        served = Served("--workers", "1", "--threads", "1", env=env, port=port)
        try:
            served.wait_healthy()
        finally:
            output = served.stop()
        assert "cannot listen" not in output, output


def test_an_exporter_whose_server_is_gone_removes_its_folder_and_ends(tmp_path) -> None:
    # Its server stopped while it started: it printed a BrokenPipeError traceback on
    # "ready" and left its folder in /tmp; or, its parent gone before it ran, it would
    # have served under init for ever.
    import sys

    folder = tmp_path / "counts"
    folder.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    ended = subprocess.run(
        [sys.executable, "-m", "cruddur.telemetry.exporter", "--dir", str(folder),
         "--port", str(free_port()), "--parent", str(gone.pid)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert ended.returncode == 0 and "Traceback" not in ended.stderr, ended.stderr
    assert not folder.exists()
    folder.mkdir()
    reader, writer = os.pipe()
    os.close(reader)  # nobody reads "ready"
    with os.fdopen(writer, "w") as unread:
        quiet = subprocess.run(
            [sys.executable, "-m", "cruddur.telemetry.exporter", "--dir", str(folder),
             "--port", str(free_port())],
            stdout=unread, stderr=subprocess.PIPE, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr, quiet.stderr


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_workers_stop_when_the_main_process_is_killed(
    seeded_db: str, tmp_path, server: str
) -> None:
    # SIGKILL or the OOM killer ends granian's main process without a word to its
    # workers: they went on serving on the port (parent now pid 1), with nobody left to
    # stop them. Each worker now gets a SIGTERM when its parent dies. (A review: gunicorn's
    # sync workers, --threads 1, served on for 10-20 s.)
    served = Served(
        "--server", server, "--workers", "2", "--threads", "1", env=_env(seeded_db, tmp_path)
    )
    try:
        served.wait_healthy()
        started = "Started worker-2" if server == "granian" else "Booting worker"
        deadline = time.monotonic() + 10
        while served.output.count(started) < (1 if server == "granian" else 2):
            assert time.monotonic() < deadline, served.output
            time.sleep(0.1)
        os.kill(served.process.pid, signal.SIGKILL)
        served.process.wait(timeout=10)
        deadline = time.monotonic() + WORKERS_KILL_TIMEOUT
        while served.leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not served.leftovers(), f"workers left serving:\n{served.output}"
        with pytest.raises(OSError):
            served.get("/api/health", timeout=1)
    finally:
        served.kill_all()


def test_a_worker_that_dies_is_replaced_and_the_server_goes_on(seeded_db: str, tmp_path) -> None:
    # A worker killed outright (the OOM killer) stopped the whole server, its other
    # worker serving included: every request then found the port closed.
    served = Served("--workers", "2", "--threads", "1", env=_env(seeded_db, tmp_path))
    try:
        served.wait_healthy()
        assert served.saw("Started worker-2"), served.output
        workers = [pid for pid in served.leftovers() if pid != served.process.pid]
        assert len(workers) == 2, served.output
        os.kill(workers[1], signal.SIGKILL)
        assert served.saw("Respawning worker", timeout=10), served.output
        deadline = time.monotonic() + 10
        while True:
            now = [pid for pid in served.leftovers() if pid != served.process.pid]
            if len(now) == 2 and workers[1] not in now:
                break
            assert time.monotonic() < deadline, f"not replaced: {now}\n{served.output}"
            time.sleep(0.05)
        served.wait_healthy(timeout=10)
        assert all(served.get("/api/health") == 200 for _ in range(10))
        assert served.process.poll() is None, served.output
    finally:
        output = served.stop()
    assert "Unexpected exit from worker-2" in output


def _pages_asset_folders(served: Served, requests: int = 40) -> set[str]:
    """The asset folders the page names, from many requests at once (both workers)."""

    def one(_: int) -> str:
        with urllib.request.urlopen(f"{served.base}/", timeout=5) as response:
            return re.search(r"/assets/[0-9a-f]+/", response.read().decode())[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return set(pool.map(one, range(requests)))


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_a_replaced_worker_serves_the_files_the_others_do(
    seeded_db: str, tmp_path, server: str
) -> None:
    # Each worker read the page's files itself: one started in place of a dead one after
    # they changed on disk (a `git pull` under bin/run) served others under another
    # fingerprint, and a page from one worker got 404s for its assets from the other.
    # Both workers are replaced here, so every answer comes from a replacement.
    copy = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "cruddur", copy / "cruddur", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {**_env(seeded_db, tmp_path), "PYTHONPATH": str(copy)}
    served = Served("--server", server, "--workers", "2", "--threads", "1", env=env)
    try:
        served.wait_healthy()
        workers = _workers_of(served, 2)
        before = _pages_asset_folders(served)
        assert len(before) == 1, before
        with (copy / "cruddur" / "web" / "static" / "style.css").open("a") as css:
            css.write(".changed { color: red }\n")
        for worker in workers:
            os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while set(workers) & set(now := _workers_of(served)) or len(now) != 2:
            assert time.monotonic() < deadline, f"not replaced: {now}\n{served.output}"
            time.sleep(0.05)
        served.wait_healthy(timeout=10)
        assert _pages_asset_folders(served) == before
        (folder,) = before
        assert all(served.get(f"{folder}main.js") == 200 for _ in range(10))
    finally:
        served.stop()


def _workers_of(served: Served, count: int | None = None) -> list[int]:
    deadline = time.monotonic() + 10
    while True:
        workers = [pid for pid in served.leftovers() if pid != served.process.pid]
        if count is None or len(workers) == count or time.monotonic() > deadline:
            return workers
        time.sleep(0.05)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGABRT])
def test_a_gunicorn_worker_that_ends_leaves_the_servers_files_to_the_others(
    seeded_db: str, tmp_path, stop: int
) -> None:
    # A review: gunicorn's workers end with sys.exit through the main module's frame, and
    # cruddur.gunicorn_main's clean-up ran in the worker: the metrics' counts folder and
    # the shared last write went, the replacement failed to boot, and the server stopped.
    # (SIGABRT is what gunicorn's --timeout sends a stuck worker.)
    metrics = free_port()
    env = {**_env(seeded_db, tmp_path), "CRUDDUR_METRICS_PORT": str(metrics)}
    served = Served("--server", "gunicorn", "--workers", "2", "--threads", "1", env=env)
    try:
        served.wait_healthy()
        deadline = time.monotonic() + 10
        while len(workers := re.findall(r"Booting worker with pid: (\d+)", served.output)) < 2:
            assert time.monotonic() < deadline, served.output
            time.sleep(0.1)
        folder = _counts_folder(_exporter_of(served))
        os.kill(int(workers[0]), stop)
        time.sleep(2)  # replaced meanwhile
        assert served.process.poll() is None, served.output
        assert all(served.get("/api/health") == 200 for _ in range(10))
        assert Path(folder).is_dir(), served.output
        assert request(f"http://127.0.0.1:{metrics}/metrics")[0] == 200
        assert "No such file or directory" not in served.output, served.output
    finally:
        served.stop()


def test_the_machine_wide_hold_is_per_address() -> None:
    # Per port alone, a server on 127.0.0.2 was refused while one on 127.0.0.1 served.
    port = free_port()
    first = ports.hold_port_on_this_machine("127.0.0.1", port)
    try:
        other = ports.hold_port_on_this_machine("127.0.0.2", port)
        assert other is not None
        other.close()
        with pytest.raises(PortTaken, match=f"port {port} on 127.0.0.1 is held by another"):
            ports.hold_port_on_this_machine("127.0.0.1", port)
        # A server on every address beside one on any: both would serve the port.
        with pytest.raises(PortTaken, match=f"port {port} on 0.0.0.0 is held by another"):
            ports.hold_port_on_this_machine("0.0.0.0", port)
    finally:
        first.close()
    ports.hold_port_on_this_machine("127.0.0.1", port).close()  # gone with its holder
    everywhere = ports.hold_port_on_this_machine("::", port)
    try:
        with pytest.raises(PortTaken, match=f"port {port} on 127.0.0.2 is held by another"):
            ports.hold_port_on_this_machine("127.0.0.2", port)
    finally:
        everywhere.close()
    # Every IPv4 address written as IPv6 is every address too.
    mapped = ports.hold_port_on_this_machine("::ffff:0:0", port)
    try:
        with pytest.raises(PortTaken):
            ports.hold_port_on_this_machine("127.0.0.1", port)
    finally:
        mapped.close()


def test_another_programs_odd_socket_name_does_not_stop_serve() -> None:
    # /proc/net/unix prints abstract names as they are: line breaks made a blank line,
    # and serve stopped with "unexpected IndexError".
    odd = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    odd.bind(f"\0cruddur-test-odd-{os.getpid()}\n\n \n")
    try:
        ports.hold_port_on_this_machine("127.0.0.1", free_port()).close()
    finally:
        odd.close()


@pytest.mark.parametrize("outgoing", ["1024 65535", "1000 65535", "32768 60999"])
def test_a_port_for_a_server_is_found_whatever_the_outgoing_range(
    monkeypatch: pytest.MonkeyPatch, tmp_path, outgoing: str
) -> None:
    # A review: on a host whose outgoing range begins at 1024 (a common tuning) there is
    # no port below it, and `db up` failed "empty range for randrange()".
    from cruddur import ports

    (tmp_path / "range").write_text(f"{outgoing}\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "range")
    port = ports.unused_port()
    low = int(outgoing.split()[0])
    assert 1024 <= port < 65536
    if low > 2024:
        assert port < low
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free


@pytest.mark.parametrize("main", ["cruddur.granian_main", "cruddur.gunicorn_main"])
def test_a_ctrl_c_while_the_server_imports_is_a_stop_not_a_traceback(tmp_path, main: str) -> None:
    # A review: SIGINT just after "server: granian …", while cruddur.granian_main still
    # imported granian and the app (before granian's handlers), printed ~40 lines of
    # KeyboardInterrupt traceback from importlib; gunicorn's start the same, ~20.
    import sys

    # Once first, so that its bytecode is written: a checkout just changed has none, and
    # a Ctrl-C while Python compiles the module itself, before any of its code runs,
    # is Python's own traceback (an installed package has its bytecode compiled).
    subprocess.run([sys.executable, "-m", main, "--help"], capture_output=True, timeout=60)
    for delay in (0.05, 0.1, 0.15):
        started = subprocess.Popen(
            [sys.executable, "-m", main, "--help"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(delay)
        started.send_signal(signal.SIGINT)
        _, stderr = started.communicate(timeout=30)
        assert "Traceback" not in stderr, (delay, stderr)
        assert started.returncode in (0, 130, -signal.SIGINT), (delay, started.returncode)


def test_granian_giving_up_as_it_starts_is_a_failure(tmp_path) -> None:
    # A review: run by granian_main, a fatal error of granian's as it started (here a
    # log config it cannot read) exited 0, and a supervisor took it for a clean stop.
    import sys

    config = tmp_path / "log.json"
    config.write_text("{not json")
    env = {**os.environ, "GRANIAN_LOG_CONFIG": str(config)}
    started = subprocess.run(
        [sys.executable, "-m", "cruddur.granian_main", "--interface", "wsgi", "--factory",
         "--port", str(free_port()), "cruddur.worker:create_worker_app"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 1, started.stderr
    assert "Traceback" not in started.stderr


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_a_server_whose_output_reader_went_away_serves_on_quietly(
    seeded_db: str, tmp_path, server: str
) -> None:
    # A review: `cruddur serve | head -1`, and every record after the first line printed
    # "--- Logging error ---" and a traceback to stderr, a few per request.
    port = free_port()
    env = {**os.environ, **_env(seeded_db, tmp_path), "PORT": str(port)}
    env.pop("PROD_CONNECTION_URL", None)
    started = subprocess.Popen(
        [str(ROOT / ".venv/bin/cruddur"), "serve", "--server", server, "--workers", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        started.stdout.readline()
        started.stdout.close()  # as `head -1` does
        deadline = time.monotonic() + 40
        answered = 0
        while answered < 20 and time.monotonic() < deadline:
            try:
                answered += request(f"http://127.0.0.1:{port}/api/activities/home")[0] == 200
            except OSError:
                time.sleep(0.2)
        assert answered == 20
    finally:
        os.killpg(started.pid, signal.SIGTERM)
        _, stderr = started.communicate(timeout=30)
    assert "Logging error" not in stderr and "Traceback" not in stderr, stderr
