"""The request log's queue while stdout blocks (a full pipe whose reader stalled: the
awslogs driver, a `| less`): bounded, the lines past it dropped and said so, and every
request still counted in the metrics, while it blocks (they waited for the write)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cruddur.telemetry import logs, metrics, requests
from cruddur.telemetry.requests import MAX_QUEUED, Recorder

KEY = "cruddur.request_id"
EXTRA = 250  # requests past the bound
PIPE_SIZE = 4096  # the least a pipe can hold (one page): it fills after a few lines


def environ(n: int) -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", requests.ROUTE_KEY: "/api/activities/home", KEY: f"r{n}"}


def wait_until(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not {what} after {timeout} s")
        time.sleep(0.01)


def test_a_blocked_writer_bounds_the_queue_and_every_request_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted: list[int] = []  # the size of each batch the metrics were given
    monkeypatch.setattr(metrics, "observe_requests", lambda batch: counted.append(len(batch)))
    entered, release = threading.Event(), threading.Event()
    written: list[tuple[int, int]] = []  # (lines, dropped) of each write

    def write(finished: list[logs.Finished], dropped: int) -> None:
        entered.set()
        release.wait()  # stdout full, until its reader reads again
        written.append((len(finished), dropped))

    recorder = Recorder(KEY, write, counts=True)
    recorder(environ(0), "200 OK", 0.001)
    assert entered.wait(10), "the writer thread never wrote"
    # The writer is stuck on the first request's line; these wait for it.
    peak = 0
    for n in range(1, MAX_QUEUED + EXTRA + 1):
        recorder(environ(n), "200 OK", 0.001)
        peak = max(peak, len(recorder.unwritten))
    wait_until(lambda: sum(counted) == 1 + MAX_QUEUED + EXTRA, "counted while stdout blocks")
    assert max(peak, len(recorder.unwritten)) == MAX_QUEUED  # unbounded, it held them all
    assert recorder.dropped == EXTRA

    release.set()
    wait_until(lambda: sum(lines for lines, _ in written) == 1 + MAX_QUEUED, "all written")
    wait_until(lambda: any(dropped for _, dropped in written), "the drop noted")
    # One note, after the lines that were queued, for the lines dropped since the stall.
    assert [dropped for _, dropped in written if dropped] == [EXTRA]
    assert written[-1] == (MAX_QUEUED, EXTRA)
    assert recorder.dropped == 0
    # The metrics saw every request, dropped lines or not.
    assert sum(counted) == 1 + MAX_QUEUED + EXTRA

    recorder(environ(-1), "200 OK", 0.001)  # the next note counts from zero again
    wait_until(lambda: len(written) == 3, "the next request written")
    assert written[-1] == (1, 0)


def test_a_real_pipe_that_is_not_read_drops_lines_and_says_so_once_read() -> None:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    try:
        recorder = Recorder(KEY, logs.json_writer(write_end), counts=False)
        for n in range(100):  # ~25 kB of lines: the pipe fills, the writer thread blocks
            recorder(environ(n), "200 OK", 0.001)
        wait_until(lambda: not recorder.unwritten, "taken by the writer thread")
        time.sleep(0.3)  # and blocked in os.write, with nothing left to take
        assert not recorder.unwritten
        for n in range(MAX_QUEUED + EXTRA):
            recorder(environ(1000 + n), "200 OK", 0.001)
        wait_until(lambda: not recorder.finished, "taken by the counting thread")
        assert len(recorder.unwritten) == MAX_QUEUED
        assert recorder.dropped == EXTRA

        # The reader reads again.
        lines: list[str] = []
        buffered = b""
        deadline = time.monotonic() + 60
        while not lines or json.loads(lines[-1])["level"] != "warning":
            assert time.monotonic() < deadline, f"no note after {len(lines)} lines"
            buffered += os.read(read_end, 1 << 16)
            *whole, buffered = buffered.split(b"\n")
            lines += [line.decode() for line in whole]
    finally:
        os.close(write_end)
        os.close(read_end)
    *request_lines, note_line = lines
    assert len(request_lines) == 100 + MAX_QUEUED
    assert all(json.loads(line)["level"] == "info" for line in request_lines[::997])
    note = json.loads(note_line)
    assert list(note) == ["time", "level", "logger", "message", "pid", "dropped"]
    assert note["level"] == "warning" and note["logger"] == logs.REQUEST_LOGGER
    assert note["dropped"] == EXTRA and note["pid"] == os.getpid()
    assert f"{EXTRA} request lines dropped since the last such note" in note["message"]


def test_through_logging_the_note_is_a_warning_of_the_request_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Text logs (--dev), or a handler of the embedding program's: the logging path.
    caplog.set_level("INFO", logs.REQUEST_LOGGER)
    write = logs.request_writer()
    assert write is not None
    write([(time.time(), "GET", "/api/x", "200 OK", 0.002, "r", None, None)], 3)
    request, note = caplog.records
    assert request.levelname == "INFO"
    assert note.levelname == "WARNING" and note.name == logs.REQUEST_LOGGER
    assert note.dropped == 3  # type: ignore[attr-defined]
    assert "3 request lines dropped" in note.getMessage()


STALLED_AT_EXIT = """
import fcntl, logging, time
fcntl.fcntl(1, fcntl.F_SETPIPE_SZ, 4096)  # stdout: a pipe nobody reads, full at once
from cruddur.config import TelemetrySettings
from cruddur.telemetry import logs, requests
logs.configure(TelemetrySettings.from_env({}), queued=True)
recorder = requests.Recorder("k", logs.json_writer(1), counts=False)
for n in range(500):
    recorder({"REQUEST_METHOD": "GET", "k": f"r{n}"}, "200 OK", 0.001)
    logging.getLogger("cruddur.test").warning("record %d", n)
time.sleep(0.5)  # both writers blocked in os.write
"""


def test_a_worker_whose_stdout_stalled_still_ends(tmp_path: Path) -> None:
    # A review: with stdout's reader stalled, a stopping worker waited for ever on its
    # last lines (no bound on the exit's flush), on its log records' writer (joined
    # without one), and on logging's shutdown (the handler's lock, held by the blocked
    # write); granian's 5 s kill was then the only way it ended.
    script = tmp_path / "stalled.py"
    script.write_text(STALLED_AT_EXIT)
    env = {**os.environ, "PYTHONPATH": str(Path(logs.__file__).parents[2])}
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        # 0.5 s of its own, then at most EXIT_WRITE_SECONDS for each writer.
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("a process whose stdout stalled did not end within 10 s")
    finally:
        process.stdout.close()  # type: ignore[union-attr]
        stderr = process.stderr.read().decode()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
    assert process.returncode == 0, stderr


def test_lines_written_at_once_from_many_threads_never_fail_a_request() -> None:
    # A review: unqueued (text lines), each request's thread took from the same deque,
    # and one emptied by another raised "pop from an empty deque" in a request.
    recorder = Recorder(KEY, lambda finished, dropped: None, counts=False, queued=False)
    failures: list[BaseException] = []

    def requests_of_a_thread() -> None:
        try:
            for n in range(20_000):
                recorder(environ(n), "200 OK", 0.001)
        except BaseException as exc:  # handed to the test
            failures.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switched as often as can be
    try:
        threads = [threading.Thread(target=requests_of_a_thread) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []


def test_a_full_record_queue_is_written_before_a_worker_ends() -> None:
    # A review: the stop's own mark found no room in a queue a burst had filled, and the
    # stop returned at once: its records were lost though stdout took them.
    import logging

    from cruddur.telemetry.log_queue import MAX_QUEUED as RECORDS_QUEUED
    from cruddur.telemetry.log_queue import QueuedRecords

    written: list[str] = []

    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            time.sleep(0.0002)  # slower than the burst: the queue fills
            written.append(record.getMessage())

    queued = QueuedRecords(Slow(), lambda: {})
    log = logging.getLogger("cruddur.test.burst")
    log.propagate = False
    log.addHandler(queued)
    try:
        for n in range(RECORDS_QUEUED + 500):
            log.warning("record %d", n)
        queued._stop()
    finally:
        log.removeHandler(queued)
    assert len(written) >= RECORDS_QUEUED  # all those the queue held
