"""The scheduled purge: its Lambda handler against a real PostgreSQL, and its template
(cfn-lint runs on it in test_deploy_template.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from cfnlint.decode import decode
from helpers import CRUDDUR, ROOT, finished_within, run
from test_deploy_template import assert_own_logs_only

from cruddur.config import (
    PURGE_BATCH_MAX,
    PURGE_GRACE_MAX,
    PURGE_NICE_RATIO_DEFAULT,
    PURGE_NICE_RATIO_MAX,
    ConfigError,
)
from cruddur.lambdas import purge_expired
from cruddur.ops.packaging import HANDLER_FILES, PURGE_HANDLER
from cruddur.urls import with_user

TEMPLATE = ROOT / "deploy/purge-expired.yaml"
SIGN_UP_TEMPLATE = ROOT / "deploy/post-confirmation.yaml"


class Context:
    def __init__(self, left_ms: float) -> None:  # Lambda's is an int; a caller's may not be
        self.left_ms = left_ms

    def get_remaining_time_in_millis(self) -> float:
        return self.left_ms


class RunningOut(Context):
    """`left_ms` when first asked (the start's check), `then` after."""

    def __init__(self, left_ms: int, *, then: int) -> None:
        super().__init__(left_ms)
        self.then = then

    def get_remaining_time_in_millis(self) -> int:
        left, self.left_ms = self.left_ms, self.then
        return left


def _add(url: str, expires_in: str, count: int) -> list:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "INSERT INTO activities (user_uuid, message, created_at, expires_at)"
            " SELECT (SELECT uuid FROM users WHERE handle = 'bayko'), 'm' || n,"
            "   now() + %s::interval - interval '3 days', now() + %s::interval"
            " FROM generate_series(1, %s) AS n RETURNING uuid",
            [expires_in, expires_in, count],
        ).fetchall()
    return [row[0] for row in rows]


def _left(url: str, uuids: list) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM activities WHERE uuid = ANY(%s)", [uuids]
        ).fetchone()[0]


@pytest.fixture
def env(seeded_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CONNECTION_URL", seeded_db)
    monkeypatch.delenv("CONNECTION_SECRET_ARN", raising=False)
    monkeypatch.setenv("CRUDDUR_PURGE_BATCH_SIZE", "7")
    return seeded_db


def test_the_handler_purges_what_expired_past_the_grace(env: str, caplog) -> None:
    old = _add(env, "-2 days", 30)
    recent = _add(env, "-2 hours", 5)
    alive = _add(env, "1 day", 5)
    summary = purge_expired.handler({"source": "aws.scheduler"}, Context(300_000))
    assert summary["finished"] is True
    assert summary["deleted_cruds"] == 31  # and the seed's crud that expired a day ago
    assert summary["batches"] == 5
    assert _left(env, old) == 0
    assert _left(env, recent + alive) == 10
    # A trust-auth test server's URL may have no password to look for.
    password = psycopg.conninfo.conninfo_to_dict(env).get("password") or "\0no password"
    assert "purged in" in caplog.text and password not in caplog.text


def test_the_handler_stops_for_time_and_the_next_run_goes_on(env: str, monkeypatch) -> None:
    old = _add(env, "-2 days", 10)
    monkeypatch.setenv("CRUDDUR_PURGE_GRACE_HOURS", "1")
    # Time enough at the start, then less than a batch's 30 s left.
    short = purge_expired.handler({}, RunningOut(300_000, then=10_000))
    assert short == {**short, "finished": False, "batches": 0, "deleted_cruds": 0}
    assert _left(env, old) == 10
    assert purge_expired.handler({}, Context(300_000))["finished"] is True
    assert _left(env, old) == 0


def test_the_handler_and_the_clis_purge_at_once_both_finish(env: str, monkeypatch) -> None:
    # Expired cruds with 3 replies each, as the API makes them: two purges at once
    # deadlocked (purge_lock.sql), and one of them failed.
    monkeypatch.setenv("CRUDDUR_PURGE_BATCH_SIZE", "200")
    monkeypatch.setenv("CRUDDUR_PURGE_NICE_RATIO", "0")
    roots = _add(env, "-3 days", 5000)
    with psycopg.connect(env, autocommit=True) as conn:
        replies = conn.execute(
            "INSERT INTO activities (user_uuid, message, reply_to_activity_uuid, created_at,"
            " expires_at) SELECT user_uuid, 'reply', uuid, created_at, expires_at"
            " FROM activities, generate_series(1, 3) WHERE uuid = ANY(%s) RETURNING uuid",
            [roots],
        ).fetchall()
        conn.execute("ANALYZE activities")  # as autovacuum soon would: the plans a purge meets
    results: list = []
    args = ("db", "purge-expired", "--yes", "--nice-ratio", "0", "--batch-size", "200")
    cli = threading.Thread(
        target=lambda: results.append(run(CRUDDUR, *args, env={"CONNECTION_URL": env}))
    )
    cli.start()
    while _left(env, roots) == len(roots) and cli.is_alive():  # until it has begun
        time.sleep(0.01)
    try:
        summary = purge_expired.handler({"source": "aws.scheduler"}, Context(300_000))
    finally:
        cli.join()
    (done,) = results
    assert done.returncode == 0, done.stderr
    assert summary["finished"] is True
    assert _left(env, roots + [reply for (reply,) in replies]) == 0


def test_the_handler_imports_only_what_it_needs() -> None:
    code = (
        "import sys, cruddur.lambdas.purge_expired\n"
        "print('\\n'.join(sorted(m for m in sys.modules)))"
    )
    loaded = set(subprocess.check_output([sys.executable, "-c", code], text=True).split())
    heavy = {"click", "rich", "boto3", "botocore", "psycopg_pool", "cruddur.db"}
    assert not heavy & loaded
    ours = {m.replace(".", "/") for m in loaded if m.startswith("cruddur")}
    packaged = {name.removesuffix("/__init__.py").removesuffix(".py") for name in HANDLER_FILES}
    assert ours <= packaged
    for sql in ("purge_cutoff", "purge_lock", "purge_batch"):
        assert f"cruddur/db/sql/activities/{sql}.sql" in HANDLER_FILES


def test_the_template_schedules_the_packaged_handler() -> None:
    template, problems = decode(str(TEMPLATE))
    assert not problems
    function = template["Resources"]["Function"]["Properties"]
    assert function["Handler"] == PURGE_HANDLER
    assert function["Runtime"] == "python3.12"
    sign_up, _ = decode(str(SIGN_UP_TEMPLATE))
    assert function["CodeUri"] == sign_up["Resources"]["Function"]["Properties"]["CodeUri"]
    (event,) = function["Events"].values()
    assert event["Type"] == "Schedule"
    assert function["ReservedConcurrentExecutions"] == 1
    # A review: Lambda retries a failed asynchronous run twice unless told (EventBridge's
    # RetryPolicy covers only its delivery): a run stopped by a configuration error ran
    # three times a night.
    assert function["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    assert_own_logs_only(template["Resources"]["FunctionRole"]["Properties"])
    assert event["Properties"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    # The handler keeps a batch's worth of time: the function's timeout must exceed it.
    assert function["Timeout"] * 1000 > int(
        function["Environment"]["Variables"]["CRUDDUR_STATEMENT_TIMEOUT"]
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CRUDDUR_PURGE_GRACE_HOURS", "87601", "must be at most 87600"),
        ("CRUDDUR_PURGE_GRACE_HOURS", "100000000000000000000", "must be at most 87600"),
        # Unchecked, 10**19 reached the LIMIT and failed there as "bigint out of range".
        ("CRUDDUR_PURGE_BATCH_SIZE", "100001", "must be at most 100000"),
        ("CRUDDUR_PURGE_BATCH_SIZE", "10000000000000000000", "must be at most 100000"),
        ("CRUDDUR_PURGE_NICE_RATIO", "-1", "must be"),
        ("CRUDDUR_PURGE_NICE_RATIO", "101", "must be"),
        ("CRUDDUR_PURGE_NICE_RATIO", "nan", "must be"),
        ("CRUDDUR_PURGE_NICE_RATIO", "fast", "must be"),
    ],
)
def test_a_setting_out_of_bounds_fails_naming_it_and_deletes_nothing(
    env: str, monkeypatch, variable: str, value: str, message: str
) -> None:
    old = _add(env, "-2 days", 3)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"{variable} {message}"):
        purge_expired.handler({}, Context(300_000))
    assert _left(env, old) == 3


def _record_rests(monkeypatch, rests: list[float]) -> None:
    """time.sleep recorded instead of slept, in this thread only: the patch is the time
    module's, and other threads of the process (a watcher's loop) sleep through it too."""
    real_sleep, here = time.sleep, threading.current_thread()

    def sleep(seconds: float) -> None:
        if threading.current_thread() is here:
            rests.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(purge_expired.time, "sleep", sleep)


def test_the_handler_rests_after_each_full_batch(env: str, monkeypatch) -> None:
    _add(env, "-2 days", 20)  # with the seed's expired crud: 7 + 7 + 7, then none
    monkeypatch.setenv("CRUDDUR_PURGE_NICE_RATIO", "2.5")
    rests: list[float] = []
    _record_rests(monkeypatch, rests)
    summary = purge_expired.handler({}, Context(300_000))
    assert summary["finished"] is True and summary["batches"] == 3
    assert len(rests) == 3 and all(rest > 0 for rest in rests)
    assert sum(rests) < 2.5 * summary["seconds"]  # 2.5 times each batch's own time


def test_the_rest_never_outlasts_the_invocation(env: str, monkeypatch) -> None:
    _add(env, "-2 days", 10)
    monkeypatch.setenv("CRUDDUR_PURGE_NICE_RATIO", "100")
    rests: list[float] = []
    _record_rests(monkeypatch, rests)
    monkeypatch.setenv("CRUDDUR_STATEMENT_TIMEOUT", "300")
    purge_expired.handler({}, Context(1_500))  # a second and a half to live, always
    assert rests and max(rests) <= 0.5


class CutOff(Context):
    """A context whose third look at the clock ends the function's session, as a
    failover would, after the cutoff and one batch."""

    def __init__(self, url: str) -> None:
        super().__init__(300_000)
        self.url, self.looks = url, 0

    def get_remaining_time_in_millis(self) -> int:
        self.looks += 1
        if self.looks == 3:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'cruddur-purge-expired'"
                    " AND datname = current_database()"  # not another test's purge
                )
        return self.left_ms


def test_a_database_lost_mid_purge_is_one_line_and_keeps_what_is_done(env: str, caplog) -> None:
    old = _add(env, "-2 days", 20)
    alive = _add(env, "1 day", 5)
    with pytest.raises(RuntimeError) as stopped:
        purge_expired.handler({}, CutOff(env))
    message = str(stopped.value)
    assert "\n" not in message and "purge stopped by the database" in message
    assert "1 batches (7 cruds" in message  # the first batch stays deleted
    assert _left(env, old) == 13 and _left(env, alive) == 5
    password = psycopg.conninfo.conninfo_to_dict(env).get("password") or "\0no password"
    assert password not in caplog.text + message
    assert "the next run goes on" in caplog.text


class StallsAfterOneBatch:
    """A context counting down from `left_ms` that, as the second batch is about to
    start (its third look at the clock, the rest off), stalls the proxy in front of the
    database: a server gone silent mid-run."""

    def __init__(self, left_ms: int, proxy) -> None:
        self.ends, self.proxy, self.looks = time.monotonic() + left_ms / 1000, proxy, 0

    def get_remaining_time_in_millis(self) -> int:
        self.looks += 1
        if self.looks == 3:
            self.proxy.stalled.set()
        return max(0, int(1000 * (self.ends - time.monotonic())))


def test_a_database_gone_silent_mid_purge_is_one_line_before_the_invocation_ends(
    env: str, monkeypatch, caplog
) -> None:
    # statement_timeout runs on the server: the purge waited on a silent one until Lambda
    # killed it at its Timeout, with no "purge stopped" line, twice past its time here.
    from test_post_confirmation import StallingProxy

    old = _add(env, "-2 days", 20)
    params = psycopg.conninfo.conninfo_to_dict(env)
    proxy = StallingProxy(params.get("host") or "127.0.0.1", int(params.get("port") or 5432))
    monkeypatch.setenv(
        "CONNECTION_URL", psycopg.conninfo.make_conninfo(env, host="127.0.0.1", port=proxy.port)
    )
    monkeypatch.setenv("CRUDDUR_STATEMENT_TIMEOUT", "1000")
    monkeypatch.setenv("CRUDDUR_PURGE_NICE_RATIO", "0")
    context = StallsAfterOneBatch(4_000, proxy)
    outcome, took = finished_within(lambda: purge_expired.handler({}, context), 10)
    proxy.close()  # ends a wait the fix did not
    assert outcome and took < 4.0, took  # before the invocation's end
    (stopped,) = outcome
    assert isinstance(stopped, RuntimeError), stopped
    assert "purge stopped by the database" in str(stopped)
    assert "1 batches (7 cruds" in str(stopped)
    assert "the next run goes on" in caplog.text
    assert _left(env, old) == 13


def test_a_connect_to_a_silent_server_ends_before_the_invocation(
    env: str, monkeypatch, caplog
) -> None:
    # A review: its connect had libpq's bound alone, per address: with
    # CRUDDUR_CONNECT_TIMEOUT 12, or a host named three times, it ran 12 s and 15 s in a
    # 5 s invocation, and Lambda's "Task timed out" said nothing of the database.
    from helpers import silent_port

    monkeypatch.setenv("CRUDDUR_STATEMENT_TIMEOUT", "1000")
    with silent_port() as one, silent_port() as two, silent_port() as three:
        for connect_timeout, ports in (("12", [one]), ("5", [one, two, three])):
            monkeypatch.setenv("CRUDDUR_CONNECT_TIMEOUT", connect_timeout)
            hosts = ",".join(["127.0.0.1"] * len(ports))
            url = f"postgresql://postgres@{hosts}:{','.join(map(str, ports))}/cruddur"
            monkeypatch.setenv("CONNECTION_URL", url)
            outcome, took = finished_within(lambda: purge_expired.handler({}, Context(5_000)), 30)
            assert outcome and took < 5.0, (ports, took)  # before the invocation's end
            (stopped,) = outcome
            assert isinstance(stopped, RuntimeError), stopped
            assert "purge stopped by the database" in str(stopped)


@pytest.mark.parametrize("who", ["lambda", "api", "wrong password"])
def test_a_user_the_purge_cannot_run_as_is_a_configuration_error(
    env: str, app_roles, monkeypatch, caplog, who: str, passwords_checked: bool
) -> None:
    # The sign-up Lambda's role (its CONNECTION_URL copied over) or the API's may not
    # delete: each run failed and the log said "the next run goes on", as for an outage.
    if who == "wrong password" and not passwords_checked:
        pytest.skip("the test server lets a wrong password in (trust authentication)")
    old = _add(env, "-2 days", 3)
    if who == "wrong password":
        user, password = psycopg.conninfo.conninfo_to_dict(env)["user"], "not-the-password"
    else:
        user, password = app_roles[who]
    monkeypatch.setenv("CONNECTION_URL", with_user(env, user, password))
    with pytest.raises(RuntimeError) as refused:
        purge_expired.handler({}, Context(300_000))
    message = str(refused.value)
    assert "purge refused by the database" in message and "database owner" in message
    assert "configuration error" in caplog.text and "database owner" in caplog.text
    assert "the next run goes on" not in caplog.text
    if who == "wrong password":
        assert "check the user and password" in message
    assert password not in caplog.text + message
    assert _left(env, old) == 3


def test_a_statement_timeout_longer_than_the_function_says_so(env: str, caplog) -> None:
    # A failed run (a review: it returned a summary, so no alarm on the function's errors
    # ever went off, while every run did nothing).
    with pytest.raises(RuntimeError, match=r"no batch fits: CRUDDUR_STATEMENT_TIMEOUT \(30000"):
        purge_expired.handler({}, Context(19_999.6))  # 30 s batches, 20 s to live
    assert "every run fails so until fixed" in caplog.text and "Timeout" in caplog.text
    # Whole milliseconds ("the 19999.592962999998 ms this invocation has").
    assert re.search(r"the \d+ ms this invocation has", caplog.text), caplog.text
    # No run gets a batch in: not "stopped for time with more to purge", with nothing due.
    assert "the next run goes on" not in caplog.text


def test_a_database_that_does_not_exist_is_a_configuration_error(
    env: str, monkeypatch, caplog
) -> None:
    missing = psycopg.conninfo.make_conninfo(env, dbname="cruddur_no_such_database_here")
    monkeypatch.setenv("CONNECTION_URL", missing)
    with pytest.raises(RuntimeError, match="check the database name"):
        purge_expired.handler({}, Context(300_000))
    assert "every run fails so until fixed" in caplog.text
    assert "the next run goes on" not in caplog.text


def test_the_templates_bounds_are_the_handlers() -> None:
    # A value the stack accepts but the handler refuses would fail every scheduled run.
    template, _ = decode(str(TEMPLATE))
    parameters = template["Parameters"]
    # Whole numbers in the handler's range only: as Numbers, 1.5 and 1e2 passed the stack.
    for name, low, high in [
        ("GraceHours", 1, PURGE_GRACE_MAX // timedelta(hours=1)),
        ("BatchSize", 100, PURGE_BATCH_MAX),
    ]:
        pattern = re.compile(parameters[name]["AllowedPattern"])
        admitted = [n for n in range(0, high + 1000) if pattern.fullmatch(str(n))]
        assert (admitted[0], admitted[-1], len(admitted)) == (low, high, high - low + 1), name
        for other in ("1.5", "1e2", "024", "100.0", " 24", ""):
            assert not pattern.fullmatch(other), (name, other)
        assert pattern.fullmatch(parameters[name]["Default"])
    assert parameters["NiceRatio"]["MaxValue"] == PURGE_NICE_RATIO_MAX
    assert parameters["NiceRatio"]["Default"] == PURGE_NICE_RATIO_DEFAULT
