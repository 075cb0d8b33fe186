"""CRUDDUR_TEST_POOLER=pgbouncer: the API the tests serve reaches its database through a
real PgBouncer in `pool_mode = transaction` (README, "Scaling out"). bin/test runs the API
test modules again this way, so their read and write paths all cross a transaction pooler.

Only the API's own connection goes through it (CRUDDUR_API_CONNECTION_URL, with
CRUDDUR_POOLER=transaction); the tests' own looks at the database stay direct.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pgbouncer_support import PgBouncer

VARIABLE = "CRUDDUR_TEST_POOLER"


def wanted() -> bool:
    """Is this run's API behind PgBouncer? (unset, `none` or `pgbouncer`)"""
    value = os.environ.get(VARIABLE, "").strip().lower()
    if value not in ("", "none", "pgbouncer"):
        raise pytest.UsageError(f"{VARIABLE} must be pgbouncer or none, not {value!r}")
    return value == "pgbouncer"


class ApiRoute:
    """How the API under test reaches a database: directly, or through `bouncer`."""

    def __init__(self, bouncer: PgBouncer | None) -> None:
        self.bouncer = bouncer

    def env(self, url: str) -> dict[str, str]:
        """The settings that make the API connect to `url`'s database this way: none when
        direct (the test's own settings stand)."""
        if self.bouncer is None:
            return {}
        return {
            "CRUDDUR_API_CONNECTION_URL": self.bouncer.url_for(url),
            "CRUDDUR_POOLER": "transaction",
        }

    def logins_to(self, dbname: str) -> int:
        """Client logins PgBouncer has let in to `dbname` (its log says each)."""
        if self.bouncer is None:
            return 0
        log = (self.bouncer.folder / "pgbouncer.log").read_text(errors="replace")
        return log.count(f"login attempt: db={dbname} ")


@contextmanager
def api_route(server_url: str, logins: dict[str, str]) -> Iterator[ApiRoute]:
    """This run's route: a PgBouncer in front of `server_url`'s server letting `logins`
    (name: password) in when CRUDDUR_TEST_POOLER=pgbouncer, else direct."""
    if not wanted():
        yield ApiRoute(None)
        return
    # Two server connections per database and user: transactions really do move
    # between server sessions, as behind RDS Proxy.
    bouncer = PgBouncer(server_url, pool_size=2, users=logins)
    try:
        yield ApiRoute(bouncer)
    finally:
        bouncer.stop()
