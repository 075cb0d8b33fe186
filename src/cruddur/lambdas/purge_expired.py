"""Scheduled purge: deletes cruds expired longer than a grace period, from an EventBridge
schedule (deploy/purge-expired.yaml), as `cruddur db purge-expired` does by hand.

Handler: `cruddur.lambdas.purge_expired.handler`, in the same zip as the sign-up
trigger (`cruddur lambda package`), and like it, it imports only psycopg, the standard
library and a few cruddur modules. It runs the same SQL files as the CLI
(db/sql/activities/purge_cutoff.sql, purge_lock.sql, purge_batch.sql): the cutoff fixed
at the start, batches of CRUDDUR_PURGE_BATCH_SIZE rows, each its own transaction, taking
turns with any other purge's. It stops starting batches when the invocation has less
than a batch's time left; the next scheduled run goes on from there (nothing is half
done: each batch commits or not).

It connects as the database owner (on RDS the master user): it deletes rows, which no
application role may (db/sql/roles/grant.sql gives the API's and the sign-up Lambda's
roles no DELETE). Another user, or a wrong password, fails every run the same way: the
log says so, rather than that the next run goes on.

Environment (besides CONNECTION_URL / CONNECTION_SECRET_ARN, read as the sign-up
trigger reads them):
  CRUDDUR_PURGE_GRACE_HOURS   purge what expired longer ago than this (default 24)
  CRUDDUR_PURGE_BATCH_SIZE    rows a transaction (default 5000)
  CRUDDUR_PURGE_NICE_RATIO    rest after a batch, as a multiple of its time (default 5)
  CRUDDUR_CONNECT_TIMEOUT     seconds to wait for the server (default 5)
  CRUDDUR_STATEMENT_TIMEOUT   milliseconds one batch may take (default 30000)
  CRUDDUR_POOLER              `transaction`: a transaction pooler (PgBouncer) is in front
                              (an RDS Proxy endpoint is recognised by its name)
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from functools import cache
from importlib import resources
from typing import Any

import psycopg

from cruddur.config import LambdaSettings
from cruddur.deadlines import within
from cruddur.lambdas.post_confirmation import (
    TCP_USER_TIMEOUT_MS,
    bounded,
    connect_by,
    read_conninfo,
    session_settings,
)
from cruddur.urls import redact

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)  # Lambda's root logger passes only warnings by default

APPLICATION_NAME = "cruddur-purge-expired"
SETTINGS = LambdaSettings(connect_timeout=5, statement_timeout_ms=30_000)
NEEDS_OWNER = (
    "connect as the database owner (on RDS the master user): the API's and the sign-up "
    "Lambda's roles may not delete rows"
)
CHECK_LOGIN = "check the user and password (CONNECTION_URL, the secret); " + NEEDS_OWNER
CHECK_DATABASE = "check the database name (CONNECTION_URL, the secret's dbname)"
# A connection refused for its user arrives without a SQLSTATE: libpq's words tell it
# (as db/errors.py reads them, which the Lambda cannot import: it loads the pool).
_REFUSED_LOGIN = ("authentication failed", "no pg_hba.conf entry")


def _misconfigured(exc: psycopg.Error) -> str | None:
    """What to change when the database refused this user, not this run: every later run
    would fail the same way (None: a failure the next run may not meet)."""
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return NEEDS_OWNER
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        lowered = str(exc).lower()
        if "permission denied" in lowered:  # for the database: no CONNECT
            return NEEDS_OWNER
        missing_role = "role" in lowered and "does not exist" in lowered
        if missing_role or any(words in lowered for words in _REFUSED_LOGIN):
            return CHECK_LOGIN
        if "database" in lowered and "does not exist" in lowered:
            return CHECK_DATABASE
    return None


@cache
def _sql(name: str) -> str:
    path = resources.files("cruddur").joinpath("db", "sql", "activities", f"{name}.sql")
    return path.read_text(encoding="utf-8")


def _time_left_ms(context: Any) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() if remaining is not None else float("inf")


# Kept back from the invocation's end by a statement cut there: time to log and answer.
ANSWER_S = 0.5


def _answered_by(ends: float, work: Any, conn: psycopg.Connection) -> Any:
    """work(conn), its connection cut ANSWER_S before `ends` (time.monotonic()), the
    invocation's end. The server's statement_timeout ends a statement only while the
    server runs: one that went silent mid-run (a failover, a stalled proxy) held the purge
    until Lambda killed it at its Timeout, with only "Task timed out" in the log."""
    return within(work, max(0.0, ends - ANSWER_S - time.monotonic()))(conn)


def handler(event: dict[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
    """Purge; return what was deleted and whether everything due was (`finished`)."""
    settings = LambdaSettings.from_env(os.environ, SETTINGS)
    grace = timedelta(hours=settings.purge_grace_hours)
    batch_size = settings.purge_batch_size
    nice_ratio = settings.purge_nice_ratio
    statement_ms = settings.statement_timeout_ms
    conninfo = read_conninfo(os.environ)
    pooled = settings.behind_pooler(conninfo)
    # jit off: compiling a batch's plan took longer than running it (ops/purge.py)
    bounds = {"statement_timeout": statement_ms, "jit": "off"}
    started = time.monotonic()
    cruds = replies = batches = 0
    finished = False
    cutoff = None
    left_ms = _time_left_ms(context)
    ends = started + left_ms / 1000  # inf without a context (a call by hand)
    fits = left_ms > statement_ms + 1000
    if not fits:
        # At the start: no run will ever get a batch in, whatever is left to purge. A
        # failed run, as the other configuration errors are: returned as a success, it
        # did nothing every night and no alarm on the function's errors went off.
        why = (
            f"no batch fits: CRUDDUR_STATEMENT_TIMEOUT ({statement_ms} ms) and a second's "
            f"margin exceed the {left_ms:.0f} ms this invocation has; lower it or raise the "
            "function's Timeout"
        )
        log.error("%s; a configuration error, every run fails so until fixed", why)
        raise RuntimeError(why)
    try:
        # Within the invocation, whatever CRUDDUR_CONNECT_TIMEOUT and the host's
        # addresses: libpq's bound is per address, and a connect to a silent server ran
        # past the invocation's end (Lambda's bare "Task timed out", not the line below).
        # Near the end, a last try may run past it by libpq's least wait (2 s).
        with connect_by(
            conninfo,
            ends - ANSWER_S,
            settings.connect_timeout,
            near_the_end=True,
            autocommit=True,  # each batch its own short transaction
            application_name=APPLICATION_NAME,
            # Sent data unacknowledged this long (ms): a server gone from the network.
            tcp_user_timeout=TCP_USER_TIMEOUT_MS,
            **session_settings(pooled, bounds),
        ) as conn:

            def read_cutoff(conn: psycopg.Connection) -> Any:
                with bounded(conn, pooled, bounds):
                    return conn.execute(_sql("purge_cutoff"), {"grace": grace}).fetchone()[0]

            def purge_batch(conn: psycopg.Connection) -> tuple[int, int]:
                # After any other purge's batch (the CLI's: two at once deadlocked); the
                # lock and the batch in one transaction, its bounds set in it behind a pooler.
                with conn.transaction(), bounded(conn, pooled, bounds):
                    conn.execute(_sql("purge_lock"))
                    return conn.execute(_sql("purge_batch"), params).fetchone()

            cutoff = _answered_by(ends, read_cutoff, conn)
            params = {"cutoff": cutoff, "batch_size": batch_size}
            while _time_left_ms(context) > statement_ms + 1000:
                batch_started = time.monotonic()
                deleted_cruds, deleted_replies = _answered_by(ends, purge_batch, conn)
                if deleted_cruds + deleted_replies == 0:
                    finished = True
                    break
                cruds, replies = cruds + deleted_cruds, replies + deleted_replies
                batches += 1
                rest = nice_ratio * (time.monotonic() - batch_started)
                if rest > 0 and deleted_cruds + deleted_replies >= batch_size:  # more to come
                    # The API's share of the database (ops/purge.py); never past the end.
                    time.sleep(max(0.0, min(rest, _time_left_ms(context) / 1000 - 1)))
    except psycopg.Error as exc:
        # Each batch committed or not: what is done stays done, nothing half deleted.
        lines = str(exc).strip().splitlines()
        problem = f"{type(exc).__name__}: {lines[0] if lines else ''}"
        done = f"{batches} batches ({cruds} cruds, {replies} replies) deleted before"
        fix = _misconfigured(exc)
        if fix is not None:
            log.error("purge in %s refused: %s; %s it; a configuration error, every run "
                      "fails so until fixed: %s", redact(conninfo), problem, done, fix)  # fmt: skip
            raise RuntimeError(f"purge refused by the database ({problem}): {fix}") from None
        log.error("purge in %s stopped: %s; %s it; the next run goes on", redact(conninfo),
                  problem, done)  # fmt: skip
        raise RuntimeError(f"purge stopped by the database ({problem}); {done} it") from None
    assert cutoff is not None
    summary = {
        "cutoff": cutoff.isoformat(),
        "deleted_cruds": cruds,
        "deleted_replies": replies,
        "batches": batches,
        "seconds": round(time.monotonic() - started, 3),
        "finished": finished,
    }
    log.info("purged in %s: %s", redact(conninfo), summary)
    if not finished:
        log.warning("stopped for time with more to purge; the next run goes on")
    return summary
