"""Helpers the tests share: run a command as a user would, look into a database, a free
port, a server program run as `postgres`, a user pool in moto's Cognito."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cruddur.ports import unused_port
from cruddur.urls import parse

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "bin"
CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"

# The tables' columns, named as the original Cruddur named them.
USER_COLUMNS = frozenset({
    "uuid", "display_name", "handle", "email", "cognito_user_id", "created_at",
})  # fmt: skip
ACTIVITY_COLUMNS = frozenset({
    "uuid", "user_uuid", "message", "replies_count", "reposts_count", "likes_count",
    "reply_to_activity_uuid", "expires_at", "created_at",
})  # fmt: skip


_scratch_home: list[str] = []  # made on first use, removed when this process ends


def _with_scratch_home(env: dict[str, str]) -> dict[str, str]:
    """`env`, given a CRUDDUR_HOME of this process's own when it names a database and no
    home: `db setup` and `db roles` wrote their roles files (URLs to databases since
    dropped) and `serve` its port lock into the checkout's .cruddur. Without a URL the
    command means the checkout's embedded server, whose home that is."""
    if "CRUDDUR_HOME" in env or not {"CONNECTION_URL", "PROD_CONNECTION_URL"} & env.keys():
        return env
    if not _scratch_home:
        _scratch_home.append(tempfile.mkdtemp(prefix="cruddur-test-home-"))
        atexit.register(shutil.rmtree, _scratch_home[0], ignore_errors=True)
    return {**env, "CRUDDUR_HOME": _scratch_home[0]}


# The tests choose a command's settings themselves: a CRUDDUR_ENV_FILE of this process's
# never reaches it, and a bin/ script reads no .env of the checkout's (a developer's own).
_NOT_INHERITED = ("CONNECTION_URL", "PROD_CONNECTION_URL", "CRUDDUR_ENV_FILE")
_NO_CHECKOUT_ENV = {"CRUDDUR_ENV_FILE": ""}


def run(
    command: str | Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | str = "/",
) -> subprocess.CompletedProcess[str]:
    """Run a bin/ script (or the cruddur command) as a user would, from another folder."""
    full_env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    script = isinstance(command, str) and not command.startswith("/")
    full_env.update(
        {"NO_COLOR": "1", "COLUMNS": "200", **(_NO_CHECKOUT_ENV if script else {}), **(env or {})}
    )
    full_env = _with_scratch_home(full_env)
    path = BIN / command if script else command
    return subprocess.run(
        [str(path), *args],
        env=full_env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


# What a bin/ script runs: `exec …/lib/command GROUP VERB LABEL "$@"` (bin/lib/command).
_SCRIPT_LINE = re.compile(r'lib/command" (\S+) (\S+) (\S+) "\$@"$', re.MULTILINE)


def cli(
    command: str | Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | str = "/",
) -> subprocess.CompletedProcess[str]:
    """run(command, …) without a new process, for a test about what a command does, not
    about the process it runs in (~0.25 s of CPU saved a call: the interpreter's start and
    its imports). The same arguments, environment (CONNECTION_URL and
    PROD_CONNECTION_URL taken from this process's), folder, stdin, exit status, stdout and
    stderr; for a bin/ script, what bin/lib/command adds: its `== LABEL` line, `prod` as
    --prod, CRUDDUR_SCRIPT; an uncaught exception's traceback on stderr, as Python prints
    it. Only for verbs that start no program of their own on the inherited stdout and
    stderr (psql, pg_ctl, …): those would write past the capture."""
    from click.testing import CliRunner

    from cruddur.cli import main

    header, extra = "", {}
    if isinstance(command, str) and "/" not in command:
        found = _SCRIPT_LINE.search((BIN / command).read_text())
        assert found, f"bin/{command} does not run bin/lib/command"
        group, verb, label = found.groups()
        argv = list(args)
        if group == "db" and verb != "new" and argv[:1] == ["prod"]:
            argv[0] = "--prod"
        argv = [group, verb, *argv]
        header, extra = f"== {label}\n", {"CRUDDUR_SCRIPT": label}
        if "CRUDDUR_ENV_FILE" not in (env or {}):  # as bin/lib/command would, for the tests
            extra.update(_NO_CHECKOUT_ENV)
        command = BIN / command
    else:
        assert Path(command) == CRUDDUR, f"{command} is not the cruddur command"
        argv = list(args)
    wanted = {
        **{k: v for k, v in os.environ.items() if k not in _NOT_INHERITED},
        "NO_COLOR": "1",
        "COLUMNS": "200",
        **(env or {}),
        **extra,
    }
    wanted = _with_scratch_home(wanted)
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    saved_levels = _logger_levels()  # the CLI quiets psycopg's logger, rds botocore's
    # Key by key, never os.environ.clear(): another thread (conftest's, making the next
    # test's database) may read the environment meanwhile.
    _become(wanted)
    try:
        os.chdir(cwd)
        sys.argv = [str(CRUDDUR), *argv]
        _forget_consoles()
        result = CliRunner().invoke(main, argv, input=stdin or "", prog_name="cruddur")
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        _become(saved_env)
        _forget_consoles()
        for logger, level in saved_levels.items():
            logger.setLevel(level)
    stderr = header + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(
        [str(command), *args], result.exit_code, result.stdout, stderr
    )


def _logger_levels() -> dict[logging.Logger, int]:
    """Every logger's own level (the root's too), for a test after a CLI run to log as
    before it: its checks of what was logged must not miss a line the CLI quieted."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return {logger: logger.level for logger in loggers if isinstance(logger, logging.Logger)}


def _become(environ: dict[str, str]) -> None:
    for key in [key for key in os.environ if key not in environ]:
        del os.environ[key]
    for key, value in environ.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _forget_consoles() -> None:
    """The CLI's cached consoles and command name, made again for the next caller: they
    read NO_COLOR, COLUMNS and argv[0] when made."""
    from cruddur.cli import output

    for cached in (
        output.out,
        output.err,
        output._typed_command,
        output._typed_scripts,
        output._checkout,
    ):
        cached.cache_clear()


def free_port() -> int:
    """A port for a server a test starts (or stops and starts again) later: below the
    ephemeral range, where no client socket can take it meanwhile (ports.unused_port)."""
    return unused_port()


def as_postgres_user() -> dict[str, Any]:
    """subprocess.run's arguments that run a server program (PostgreSQL, PgBouncer) as the
    `postgres` user when the tests run as root, since they refuse root; none otherwise."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


def database_exists(admin: psycopg.Connection, name: str) -> bool:
    row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return row is not None


def as_role(url: str, user: str, password: str) -> str:
    """The same database, connected as another role."""
    params = parse(url)
    params.update(user=user, password=password)
    return " ".join(f"{key}='{value}'" for key, value in params.items())


def user_pool(auth_flow: str) -> tuple[str, str]:
    """A user pool "cruddur" in moto's Cognito (under the `aws` fixture) with an app client
    "web" that signs in by `auth_flow` and refreshes: the pool's id and the client's."""
    from cruddur.aws import client

    idp = client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="cruddur")["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="web",
        ExplicitAuthFlows=[auth_flow, "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    return pool_id, client_id


def ctrl_c_once(command: list[str], url: str, env: dict[str, str], running: str) -> tuple[int, str]:
    """Start `command` (a `cruddur` verb on the database at `url`) in a process group of
    its own, as a shell's job is; once a session there matches `running` (a condition on
    pg_stat_activity), send the group SIGINT, as Ctrl-C in a terminal does. Its exit
    status and stderr."""
    full_env = {k: v for k, v in os.environ.items() if k != "PROD_CONNECTION_URL"}
    full_env.update(env, NO_COLOR="1", CONNECTION_URL=url)
    process = subprocess.Popen(
        command, env=full_env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        with psycopg.connect(url, autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            query = sql.SQL(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND {}"
            ).format(sql.SQL(running))  # the tests' own condition
            while not watcher.execute(query).fetchone():
                assert time.monotonic() < deadline, f"nothing ever matched {running}"
                time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        err = process.communicate(timeout=30)[1]
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, err


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a server stuck, or a firewall
    letting the handshake through): its accepted sockets are held until the block ends."""
    held: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.2)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    held.append(listener.accept()[0])

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            thread.join(timeout=5)
            for client in held:
                client.close()


def finished_within(call: Callable[[], Any], seconds: float) -> tuple[list[Any], float]:
    """call() in a thread of its own, waited for at most `seconds`: ([what it returned or
    raised], seconds taken), or ([], seconds) while it still runs (left running, daemon:
    the test fails on that instead of hanging)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # handed to the test
            outcome.append(exc)

    started = time.monotonic()
    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(seconds)
    return outcome, time.monotonic() - started
