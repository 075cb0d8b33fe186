"""psycopg.connect, holding nothing once it has failed.

A connect that fails (a timeout above all: a server that accepts and never answers, or
one stopped) leaves its socket open until Python's cycle collector next runs: the
exception's traceback holds psycopg's frame, whose locals hold the exception and the
half-made connection. In a server worker the reachability probe connects five times a
second while the database is silent: its open sockets grew without bound, and once the
database was back each became a backend waiting out authentication_timeout (60 s), until
the server refused everyone ("too many clients"). Dropping the tracebacks breaks the
cycle: the connection is closed as its last reference goes.
"""

from __future__ import annotations

from typing import Any

import psycopg


def connect(conninfo: str = "", **kwargs: Any) -> psycopg.Connection:
    """psycopg.connect(conninfo, **kwargs); a failure holds no socket."""
    try:
        return psycopg.connect(conninfo, **kwargs)
    except psycopg.Error as exc:
        let_go(exc)
        raise


def let_go(exc: BaseException) -> None:
    """Drop the tracebacks of `exc` and the exceptions it was raised from or during (what
    the error says stays): they held a failed connection's socket open."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        each = pending.pop()
        if each is None or id(each) in seen:
            continue
        seen.add(id(each))
        each.__traceback__ = None
        pending += [each.__cause__, each.__context__]
