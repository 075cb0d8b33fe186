"""The database errors people hit most, each turned into one line that says the fix.

The original scripts left users reading raw tracebacks (or nothing: `psql < file`
exits 0 on errors). `explain` gives the reason and the next command to run.
"""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolTimeout

from cruddur.config import ConfigError
from cruddur.db.pool import InvalidText
from cruddur.db.scripts import ScriptError
from cruddur.errors import Explanation

RDS_REACH_HINT = (
    "For RDS: is the instance available (not stopped), and does its security group admit "
    "your current IP? (`bin/rds-update-sg-rule` lets it in)"
)

LOCAL_REACH_HINT = "Locally: `cruddur db status` (`cruddur db up` starts the embedded server). "
UNREACHABLE_HINT = "is the server running and reachable? " + LOCAL_REACH_HINT + RDS_REACH_HINT

IN_USE_HINT = (
    "see them with `bin/db-sessions`; `--force` disconnects them (`bin/db-drop --force`), "
    "as does `bin/db-kill-all`"
)

TLS_HINT = (
    "the server's certificate is not one the RDS CA bundle vouches for (Amazon's roots, "
    "for an RDS Proxy endpoint), or not for this host name. If it is your RDS instance, "
    "fetch AWS's current bundle: `cruddur rds ca-bundle --refresh` (a proxy's roots are "
    "not fetched: CRUDDUR_RDS_PROXY_CA_BUNDLE names others); otherwise something between "
    "you and RDS answered in its place"
)

_TLS_MARKERS = ("certificate verify failed", "does not match host name", "root certificate file")

POOLER_HINT = (
    "a transaction pooler (PgBouncer, RDS Proxy) is between you and PostgreSQL and nobody "
    'said so: set CRUDDUR_POOLER=transaction (README, "Poolers, RDS Proxy and the session lock")'
)
# PgBouncer's refusal of the API's session settings (the `options` startup parameter):
# its own words, no secret in them.
_POOLER_MARKERS = ("unsupported startup parameter",)

_UNREACHABLE_MARKERS = (
    "connection refused",
    "could not connect",
    "timeout expired",
    "failed to resolve host",
    "could not translate host name",
    "no route to host",
    "network is unreachable",
    "server closed the connection unexpectedly",
    "connection timed out",
)

# SQLSTATE → (kind, hint). Connection-time errors arrive without a SQLSTATE in psycopg,
# so `_connection_kind` recognises those by libpq's message instead.
_BY_SQLSTATE: dict[str, tuple[str, str]] = {
    "28P01": ("auth", "check the user name and password in the connection URL"),
    "28000": ("auth", "check the user name in the connection URL; the role must exist"),
    "3D000": (
        "no-database",
        "create it with `bin/db-create`, or create and load it with `bin/db-setup`",
    ),
    "42P01": ("no-relation", "create the schema first: `bin/db-migrate` (or `bin/db-setup`)"),
    "42883": ("no-function", "create the schema first: `bin/db-migrate` (or `bin/db-setup`)"),
    "55006": ("in-use", IN_USE_HINT),
    "42501": (
        "permission",
        "the role in the connection URL lacks this privilege: connect as the database owner "
        "(on RDS, the master user) or GRANT it",
    ),
    "42P04": ("exists", "nothing to do: the database is already there"),
    "23505": ("duplicate", "a row with that value already exists"),
    "23503": ("foreign-key", "it refers to a row that does not exist"),
    "23502": ("not-null", "a required value is missing"),
    "23514": ("check", "a value breaks one of the schema's rules (length, format or range)"),
    "22001": ("too-long", "a value is longer than its column allows"),
    "22P02": ("invalid-value", "a value is not of the column's type (a malformed UUID?)"),
    "57014": ("timeout", "the statement ran past its time limit"),
    # Prepared statements meeting other clients' on a pooler's shared server connections.
    "42P05": ("pooler", POOLER_HINT),
    "26000": ("pooler", POOLER_HINT),
}

_EXTENSION_HINT = (
    "the server lacks this extension: install its contrib package "
    "(Debian: postgresql-contrib), or on RDS pick an engine version that offers it"
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connection_kind(message: str) -> tuple[str, str] | None:
    lowered = message.lower()
    if "password authentication failed" in lowered or (
        "role" in lowered and "does not exist" in lowered
    ):
        return _BY_SQLSTATE["28P01"]
    if "database" in lowered and "does not exist" in lowered:
        return _BY_SQLSTATE["3D000"]
    if "permission denied for database" in lowered:
        return _BY_SQLSTATE["42501"]
    if any(marker in lowered for marker in _TLS_MARKERS):
        return ("tls", TLS_HINT)
    if any(marker in lowered for marker in _POOLER_MARKERS):
        return ("pooler", POOLER_HINT)
    if any(marker in lowered for marker in _UNREACHABLE_MARKERS):
        return ("unreachable", UNREACHABLE_HINT)
    return None


def _clean_connection_message(message: str) -> str:
    # libpq prefixes 'connection failed: connection to server at "h", port p failed: FATAL:'
    # Its lines become one, each ended as a sentence ("… Connection refused. Is the
    # server running …?": joined with a space alone, the two read as one).
    lines = [" ".join(line.split()) for line in message.splitlines()]
    lines = [line for line in lines if line]
    text = " ".join(
        line if line[-1] in ".?!:;," or n == len(lines) - 1 else f"{line}."
        for n, line in enumerate(lines)
    )
    if "FATAL:" in text:
        text = text.split("FATAL:", 1)[1]
    return " ".join(text.split())


def problem_line(exc: BaseException) -> str:
    """Why a connection or statement failed, in one line for a log or a status; with what
    to do when it is a pooler nobody named (PgBouncer's "unsupported startup parameter:
    options" said nothing of CRUDDUR_POOLER)."""
    explained = explain(exc)
    if explained is not None and explained.kind == "pooler":
        return f"{explained.message[:200]}; {explained.hint}"
    if explained is not None:
        return explained.message[:200]
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def explain(exc: BaseException) -> Explanation | None:
    """One line and a hint for errors we recognise; None for anything else."""
    if isinstance(exc, ScriptError):
        inner = explain(exc.cause)
        return Explanation(inner.kind if inner else "sql", str(exc), inner.hint if inner else None)
    if isinstance(exc, ConfigError):
        return Explanation("config", str(exc))
    if isinstance(exc, PoolTimeout):
        return Explanation("unreachable", _first_line(exc), UNREACHABLE_HINT)
    if isinstance(exc, InvalidText):
        return Explanation("invalid-text", str(exc), "send UTF-8 text without NUL characters")
    if not isinstance(exc, psycopg.Error):
        return None
    sqlstate = exc.sqlstate
    message = _first_line(exc)
    if sqlstate in ("58P01", "0A000") and "extension" in message:
        return Explanation("no-extension", message, _EXTENSION_HINT)
    if sqlstate in _BY_SQLSTATE:
        kind, hint = _BY_SQLSTATE[sqlstate]
        return Explanation(kind, f"{message} (SQLSTATE {sqlstate})", hint)
    if isinstance(exc, psycopg.OperationalError) and sqlstate is None:
        found = _connection_kind(str(exc))
        if found:
            return Explanation(found[0], _clean_connection_message(str(exc)), found[1])
    suffix = f" (SQLSTATE {sqlstate})" if sqlstate else ""
    return Explanation("database", f"{message}{suffix}")


def redacted_reason(exc: BaseException, *, connected: bool = False) -> str:
    """The error's type and what went wrong, for a log line that must never quote the
    connection string: libpq's client-side messages (no SQLSTATE) can, password and all,
    so only a server's message (it has one) is shown as it is. `connected`: the error
    ended a connection that was up, so libpq's failure is a lost connection (a restart,
    a terminated backend), not an unreachable server."""
    name = type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        primary = getattr(getattr(exc, "diag", None), "message_primary", None)
        return f"{name}: {primary or 'server error'} (SQLSTATE {sqlstate})"
    if connected and isinstance(exc, psycopg.OperationalError):
        return f"{name}: connection lost (libpq's message is not shown)"
    if isinstance(exc, psycopg.ProgrammingError):
        return f"{name}: the connection URL is malformed"
    found = _connection_kind(str(exc)) if isinstance(exc, psycopg.OperationalError) else None
    if found and found[0] == "pooler":
        return f"{name}: a pooler refused the session's settings; {POOLER_HINT}"
    return f"{name}: {found[0] if found else 'reason withheld'} (libpq's message is not shown)"
