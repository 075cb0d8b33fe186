"""Cognito post-confirmation trigger: each newly confirmed user becomes a row of public.users.

Handler: `cruddur.lambdas.post_confirmation.handler` (deploy/post-confirmation.yaml).
It imports only psycopg, the standard library and a few cruddur modules (config, urls,
names, rds_tls, deadlines, and services.sign_up: the rules it shares with `cruddur users
sync-cognito`), and boto3 only when the URL comes from Secrets Manager (the Lambda
runtime has it), so the zip that `cruddur lambda package` builds stays small and a cold
start stays short.

Environment:
  CONNECTION_URL             the database URL. With CONNECTION_SECRET_ARN, the parts the
                             secret lacks (an RDS-managed secret has only the user and password)
  CONNECTION_SECRET_ARN      a Secrets Manager secret in the RDS format (JSON: username,
                             password, and optionally host, port, dbname)
  CRUDDUR_CONNECT_TIMEOUT    seconds to wait for the server, all its addresses (default 2)
  CRUDDUR_STATEMENT_TIMEOUT  milliseconds a statement may run (default 1000)
  CRUDDUR_RDS_CA_BUNDLE      the RDS CA bundle to verify the server with (default: the one
                             `cruddur lambda package` put in the zip)
  CRUDDUR_POOLER             `transaction`: a transaction pooler (PgBouncer) is in front;
                             an RDS Proxy endpoint is recognised by its name without it

Cognito gives the trigger 5 seconds and shows the error message of a failed trigger to
the person signing up ("PostConfirmation failed with error …"), so the errors raised here
are short sentences for them, which never repeat what they typed (a page showing it is
an injection target). The log names the user by their `sub` alone: no email, user name,
handle or name, and no database DETAIL (it quotes the row); never the password.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_attempts, conninfo_to_dict, make_conninfo

from cruddur import connecting
from cruddur.config import (
    ConfigError,
    LambdaSettings,
    check_otel_sdk_settings,
    check_otlp_destination,
    otlp_secrets,
    traces_disabled,
    traces_sampler,
)
from cruddur.deadlines import DeadlinePassed, within
from cruddur.names import name_too_long
from cruddur.rds_tls import lambda_bundle, secured
from cruddur.services.sign_up import (
    SignUpError,
    event_attributes,
    handle_clash,
    refusal,
    user_from_event,
)
from cruddur.urls import MalformedUrl, check, redact

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)  # Lambda's root logger passes only warnings by default

SIGN_UP = "PostConfirmation_ConfirmSignUp"
APPLICATION_NAME = "cruddur-post-confirmation"
TCP_USER_TIMEOUT_MS = 1500
# The account is confirmed by now, so "try again" would not help: an operator's
# `cruddur users sync-cognito` adds the row once the database is back.
UNAVAILABLE = "your account is confirmed, but your profile could not be saved yet"
# Within Cognito's 5 seconds: 2 to connect, 1 for the insert.
SETTINGS = LambdaSettings(connect_timeout=2, statement_timeout_ms=1000)
COGNITO_WAIT_MS = 5000  # how long Cognito waits for the trigger, whatever Lambda allows
ANSWER_MS = 500  # kept back from the work, to log the failure and answer in time
CONNECT_FLOOR_S = 2  # psycopg (as libpq) waits at least this long for an address
SECRET_TIMEOUTS_S = (1, 2)  # to connect to Secrets Manager, and for its answer

# Kept between invocations of a warm function: one connection, opened on first use.
_conn: psycopg.Connection | None = None
_conninfo: str | None = None
_passwords: set[str] = set()  # every password read, to keep out of the log


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Record the confirmed user; return the event unchanged, or raise SignUpError.

    With an OTLP endpoint set (and OpenTelemetry in the function, e.g. from the ADOT
    layer), each invocation is a span, its SQL statement a child, sent before returning.
    """
    traced = _tracing()
    if traced is None:
        return _record(event, context)
    tracer, provider = traced
    attributes = {"faas.trigger": "other", "app.trigger_source": _trigger(event)}
    try:
        with tracer.start_as_current_span("post-confirmation", attributes=attributes):
            return _record(event, context)
    finally:
        _flush(provider, context)


def _record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        log.warning("refused an event that is not a JSON object (%s)", type(event).__name__)
        raise SignUpError("the sign-up event is malformed")
    if event.get("triggerSource") != SIGN_UP:
        # ConfirmForgotPassword fires this trigger too: that user has a row already.
        log.info("trigger %s: nothing to record", _trigger(event))
        return event
    try:
        user = user_from_event(event)
    except SignUpError as exc:
        log.warning("refused user sub=%s: %s", _sub(event), exc)
        raise

    deadline = _deadline(context)

    def time_to_reconnect() -> bool:
        return 1000 * (deadline - time.monotonic()) > _reconnect_needs_ms()

    try:
        uuid = _insert(user, deadline, time_to_reconnect)
    except Exception as exc:
        refused = refusal(exc, user)
        if refused is None:
            log.error(
                "could not record user sub=%s in %s: %s",
                _sub(event),
                _where(),
                _scrub(_described(exc)),
            )
            if _conn is None:
                _forget_settings()  # read them (the secret: maybe rotated) again next time
            raise SignUpError(UNAVAILABLE) from exc
        log.warning("refused user sub=%s: %s", _sub(event), refused)
        raise refused from None
    if uuid is None:
        log.info("user sub=%s is already recorded; nothing to do", _sub(event))
    else:
        log.info("recorded user sub=%s as %s", _sub(event), uuid)
    return event


# -- traces -----------------------------------------------------------------------

_traced: tuple[Any, Any] | bool | None = False  # False: not looked at yet


def _tracing() -> tuple[Any, Any] | None:
    """(tracer, provider) when an OTLP endpoint is set and OpenTelemetry is importable.

    The ADOT Lambda layer's wrapper sets the SDK up itself; without it, and with the SDK
    in the function, it is set up here like the API's (OTLP/HTTP, the OTEL_* settings).
    """
    global _traced
    if _traced is not False:
        return _traced  # type: ignore[return-value]
    _traced = None
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    # Off as the settings say it is (OTEL_SDK_DISABLED=1 or yes too, an exporter of none).
    if not (endpoint and endpoint.strip()) or traces_disabled(os.environ):
        return None
    try:
        # A malformed endpoint failed each export with a traceback (ValueError: Port
        # could not be cast…) or went nowhere; a malformed header would be quoted, key
        # and all, by the SDK's own warning. Said once (without the value), and the
        # sign-ups go on untraced: a Lambda has nobody to ask.
        check_otlp_destination(os.environ)
        check_otel_sdk_settings(os.environ)  # the SDK raised on the first sign-up
        sampler, ratio = traces_sampler(os.environ)  # as checked (the SDK reads it raw)
    except ConfigError as exc:
        log.warning("traces off: %s", exc)
        return None
    _redact_log(otlp_secrets(os.environ))
    try:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if not hasattr(provider, "force_flush"):  # nobody set the SDK up: do it here
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            from cruddur.telemetry.tracing import sdk_sampler, service_resource

            name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or APPLICATION_NAME
            # The sampler as the settings read it: the SDK reads OTEL_TRACES_SAMPLER raw,
            # and took "always_off " (a space after) for unknown, sampling everything.
            provider = TracerProvider(
                resource=service_resource(name), sampler=sdk_sampler(sampler, ratio)
            )
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            trace.set_tracer_provider(provider)
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        from cruddur.telemetry.scrub import ScrubbingProcessor, put_first

        # A refused row's DETAIL quotes the email and name: not in the spans either.
        put_first(provider, ScrubbingProcessor())
        PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    except ImportError as exc:
        log.warning("traces: %s is not in the function (add the ADOT Lambda layer)", exc.name)
        return None
    except Exception as exc:  # the SDK refusing a setting: the sign-up goes on untraced
        log.warning("traces off: %s", _described(exc))
        return None
    _traced = (provider.get_tracer(__name__), provider)
    return _traced


def _redact_log(secrets: tuple[str, ...]) -> None:
    """The exporter's warnings quote the endpoint's URL: its query and userinfo (and the
    headers' values) cut from every record the root logger's handlers write, Lambda's
    own handler (to CloudWatch) among them."""
    if not secrets:
        return
    from cruddur.telemetry.logs import Redactor, redact_stderr

    redact_stderr(secrets)  # outside Lambda's runtime, no handler: one on stderr
    redactor = Redactor(secrets)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Redactor) for f in handler.filters):
            handler.addFilter(redactor)


def _flush(provider: Any, context: Any) -> None:
    """Send the invocation's spans before Lambda freezes the environment, within the
    time Cognito still waits (at most a second)."""
    seconds = min(1.0, max(0.0, (_time_left_ms(context) - 300) / 1000))
    flushing = threading.Thread(target=provider.force_flush, daemon=True)
    flushing.start()
    flushing.join(seconds)


# -- the connection -----------------------------------------------------------------


def _time_left_ms(context: Any) -> float:
    """What Lambda leaves this invocation (Cognito stops waiting at 5 s in any case)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() if remaining is not None else float("inf")


def _deadline(context: Any) -> float:
    """When the invocation's work must be over (time.monotonic()): what Lambda leaves it,
    at most Cognito's wait, less the time to answer."""
    left_ms = min(_time_left_ms(context), COGNITO_WAIT_MS) - ANSWER_MS
    return time.monotonic() + left_ms / 1000


def _settings() -> LambdaSettings:
    return LambdaSettings.from_env(os.environ, SETTINGS)


def _reconnect_needs_ms() -> int:
    """A new connection and the insert on it, at their limits (the deadline keeps the
    room to answer)."""
    settings = _settings()
    return 1000 * settings.connect_timeout + settings.statement_timeout_ms


def _insert(
    user: dict[str, str],
    deadline: float,
    time_to_reconnect: Callable[[], bool] = lambda: True,
) -> Any:
    """Run the insert, its connection cut at the deadline; once more on a new connection
    if the old one was dropped and there is time left for it."""
    global _conn

    def insert(conn: psycopg.Connection) -> Any:
        settings = _settings()
        pooled = settings.behind_pooler(_conninfo or "")  # read by _connect
        bounds = {"statement_timeout": settings.statement_timeout_ms}
        try:
            with bounded(conn, pooled, bounds):
                row = conn.execute(_sql(), user).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            if not handle_clash(exc):
                raise
            with bounded(conn, pooled, bounds):  # a statement of its own: it sees the other
                recorded = conn.execute(_sql("by_cognito_user_id"), user).fetchone()
            if recorded is None:  # another person's handle
                raise
            return None  # this user, recorded meanwhile by a second delivery of the event
        return None if row is None else row[0]

    for attempt in (1, 2):
        if _conn is None or _conn.closed:
            _conn = _connect(deadline)
        try:
            # statement_timeout and tcp_user_timeout need a server that answers or a
            # network that goes silent: a peer that takes the data and never answers (RDS
            # Proxy in a failover, a stuck server) held the insert past Cognito's wait.
            return within(insert, max(0.0, deadline - time.monotonic()))(_conn)
        except DeadlinePassed:
            _conn.close()  # cut mid-statement: never used again
            _conn = None
            raise
        except psycopg.errors.ReadOnlySqlTransaction:
            # Its session began while the database took no writes and keeps that for good
            # (default_transaction_read_only is read at a session's start): a warm
            # function refused every sign-up after the database was writable again. A
            # new session may take it; the refused insert wrote nothing.
            _conn.close()
            _conn = None
            if attempt == 2 or not time_to_reconnect():
                raise
            log.warning("the database session refuses writes (read-only); trying a new one")
        except psycopg.OperationalError as exc:
            if attempt == 2 or not _conn.broken:
                raise
            # Dropped while the function slept (server restart, failover, idle timeout).
            # Retrying is safe: the insert does nothing for a sub already recorded.
            lost = _scrub(str(exc).strip())
            if not time_to_reconnect():
                log.warning("database connection lost (%s); no time left to reconnect", lost)
                _conn.close()
                _conn = None
                raise
            log.warning("database connection lost (%s); reconnecting", lost)
            _conn.close()
            _conn = None
    raise AssertionError("unreachable")


def _forget_settings() -> None:
    global _conninfo
    _conninfo = None


def _connect(deadline: float) -> psycopg.Connection:
    global _conninfo
    if _conninfo is None:
        _conninfo = read_conninfo(os.environ, deadline - CONNECT_FLOOR_S)
    settings = _settings()
    pooled = settings.behind_pooler(_conninfo)
    bounds = {"statement_timeout": settings.statement_timeout_ms}
    conn = connect_by(
        _conninfo,
        deadline,
        settings.connect_timeout,
        autocommit=True,  # one statement per invocation: its own transaction
        application_name=APPLICATION_NAME,
        **session_settings(pooled, bounds),
        # statement_timeout runs on the server: a connection whose server vanished (a
        # failover) would wait for an answer until Lambda kills the function. Sent data
        # unacknowledged this long (ms) ends it on the client side instead.
        tcp_user_timeout=TCP_USER_TIMEOUT_MS,
    )
    log.info("connected to %s", _where())
    return conn


def connect_by(
    conninfo: str,
    deadline: float,
    connect_timeout: float,
    *,
    near_the_end: bool = False,
    **settings: Any,
) -> psycopg.Connection:
    """A connection to one of conninfo's addresses (psycopg.connect's `settings`), tried
    in turn within `connect_timeout` seconds for all of them, none started that could end
    past `deadline` (time.monotonic()). libpq's connect_timeout bounds each address (a
    host named twice, a name with several addresses): 2 s became 4 s and more.
    near_the_end: with less than CONNECT_FLOOR_S (libpq's least wait) before the
    deadline, the first address is still tried (a healthy server answers in
    milliseconds), at worst ending that much past it; no later one is."""
    ends = min(deadline, time.monotonic() + connect_timeout)
    failed: psycopg.OperationalError | None = None
    for attempt in conninfo_attempts(conninfo_to_dict(conninfo)):
        now = time.monotonic()
        floor = 0.0 if near_the_end and failed is None else CONNECT_FLOOR_S
        if now >= ends or deadline - now < floor:
            break
        try:
            return connecting.connect(
                make_conninfo("", **attempt),
                # Whole seconds, rounded down: up, 4.5 s left became 5 s, past the
                # deadline and Cognito's wait (the deadline leaves CONNECT_FLOOR_S). The
                # few µs since `ends` was set are not a second less of the setting's.
                connect_timeout=max(CONNECT_FLOOR_S, math.floor(ends - now + 0.05)),
                **settings,
            )
        except psycopg.OperationalError as exc:
            failed = exc
    if failed is not None:
        raise failed
    raise psycopg.errors.ConnectionTimeout("no time left in the invocation to connect")


def session_settings(pooled: bool, bounds: Mapping[str, object]) -> dict[str, Any]:
    """psycopg.connect's arguments for a session whose statements run within `bounds`
    (settings: statement_timeout, …): sent at connect as `options`; behind a transaction
    pooler none (PgBouncer refuses the `options` startup parameter, RDS Proxy pins a
    session whose settings change: `bounded` sets them in each transaction instead), and
    no prepared statements (the next transaction may get another server session)."""
    if pooled:
        return {"prepare_threshold": None}
    return {"options": " ".join(f"-c {name}={value}" for name, value in bounds.items())}


@contextmanager
def bounded(conn: psycopg.Connection, pooled: bool, bounds: Mapping[str, object]) -> Iterator[None]:
    """Behind a transaction pooler, the block in a transaction of its own, `bounds` set
    for it alone (SET LOCAL); without one, the block as it is (set at connect)."""
    if not pooled:
        yield
        return
    with conn.transaction():
        conn.execute(
            sql.SQL("; ").join(
                sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(name), sql.Literal(str(value)))
                for name, value in bounds.items()
            )
        )
        yield


def read_conninfo(env: Mapping[str, str], deadline: float = math.inf) -> str:
    """The connection string from CONNECTION_URL and/or the CONNECTION_SECRET_ARN secret,
    read by `deadline` (time.monotonic())."""
    url = env.get("CONNECTION_URL", "").strip()
    secret_id = env.get("CONNECTION_SECRET_ARN", "").strip()
    if not url and not secret_id:
        raise RuntimeError("set CONNECTION_URL or CONNECTION_SECRET_ARN")
    if url:
        try:  # a raw "/" or "@" in the password: libpq would read part of it as the host
            check("CONNECTION_URL", url)
        except MalformedUrl as exc:  # says why, never quoting the URL
            raise RuntimeError(str(exc)) from None
    parts: dict[str, str] = {}
    if secret_id:
        secret = _read_secret(secret_id, deadline)
        names = {"username": "user", "password": "password", "host": "host", "port": "port"}
        names["dbname"] = "dbname"
        parts = {names[k]: str(v) for k, v in secret.items() if k in names and v not in (None, "")}
    try:
        if url and parts:
            # The URL says where, the secret who: a secret in RDS's format also names
            # the instance (`rds create-proxy` makes one so), and it replaced a proxy's
            # endpoint in the URL, sending every sign-up past the proxy. It fills in
            # only where the URL is silent.
            given = conninfo_to_dict(url)
            who = ("user", "password")
            parts = {k: v for k, v in parts.items() if k in who or not given.get(k)}
        conninfo = make_conninfo(url, **parts)
        found = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        # libpq's message quotes the text it could not parse, password and all: not its cause.
        raise RuntimeError(
            "CONNECTION_URL is malformed; expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        ) from None
    if found.get("password"):
        _passwords.add(str(found["password"]))
    if not found.get("dbname"):
        # Without one libpq would pick the user's name as the database (bug B18).
        raise RuntimeError(f"{redact(conninfo)} names no database (add dbname)")
    # The server would cut a longer name and connect to another database.
    if problem := name_too_long(str(found["dbname"]), "the database name"):
        raise RuntimeError(problem)
    if not found.get("host"):
        raise RuntimeError(f"{redact(conninfo)} names no host")
    # RDS: sslmode=verify-full against the bundle `cruddur lambda package` put in the zip.
    return secured(conninfo, lambda: lambda_bundle(env), env)


def _read_secret(secret_id: str, deadline: float) -> dict[str, Any]:
    # Once, briefly, and in what the invocation has left: the connection still needs its
    # 2 s inside Cognito's 5 s. A failure fails this sign-up's row (sync-cognito adds it)
    # and the next invocation reads again.
    share = min(1.0, (deadline - time.monotonic()) / sum(SECRET_TIMEOUTS_S))
    if share <= 0:
        raise RuntimeError("no time left in the invocation to read the secret")
    import boto3  # only here: a function given CONNECTION_URL never loads it
    from botocore.config import Config

    connect_s, read_s = (share * seconds for seconds in SECRET_TIMEOUTS_S)
    # total_max_attempts: botocore's max_attempts counts the retries after the first.
    config = Config(
        connect_timeout=connect_s, read_timeout=read_s, retries={"total_max_attempts": 1}
    )
    client = boto3.client("secretsmanager", config=config)
    text = client.get_secret_value(SecretId=secret_id).get("SecretString") or ""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise RuntimeError(f"secret {secret_id} is not a JSON object (username, password, …)")
    return value


def _trigger(event: Any) -> str:
    """The event's triggerSource for the log and the span: a Cognito name, or a short
    printable stand-in for anything else."""
    source = event.get("triggerSource") if isinstance(event, dict) else None
    if isinstance(source, str) and source.isprintable() and len(source) <= 64:
        return source
    return "(malformed)" if source is not None else "(none)"


def _sub(event: dict[str, Any]) -> str:
    """The account's id, for the log: never its email or user name (personal data)."""
    sub = event_attributes(event).get("sub")
    return sub[:64] if isinstance(sub, str) and sub.isprintable() else "(none)"


def _described(exc: BaseException) -> str:
    """An error for the log without the row's values: a server error's first line (its
    DETAIL quotes the failing row), a client error's type and message."""
    primary = getattr(getattr(exc, "diag", None), "message_primary", None)
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {primary or (lines[0] if lines else '')}"


def _where() -> str:
    return redact(_conninfo) if _conninfo else "the database (no connection settings read)"


def _scrub(text: str) -> str:
    """Text for the log: the password, should a message ever quote it, as ***."""
    for password in _passwords:
        text = text.replace(password, "***")
    return text


@cache
def _sql(name: str = "create_from_cognito") -> str:
    sql = resources.files("cruddur").joinpath("db", "sql", "users", f"{name}.sql")
    return sql.read_text(encoding="utf-8")


def close() -> None:
    """Close the kept connection and forget the settings (tests; a changed environment)."""
    global _conn
    if _conn is not None:
        _conn.close()
    _conn = None
    _forget_settings()
