"""Short-lived pools for the admin verbs: one on the database, one on the server."""

from __future__ import annotations

from dataclasses import replace

from cruddur.config import PoolSettings
from cruddur.db import Db
from cruddur.db.dead_peer import with_cli_bounds
from cruddur.targets import Target
from cruddur.urls import server_conninfo


def admin_pool(settings: PoolSettings) -> PoolSettings:
    # A CLI verb runs its statements one after another: one connection is plenty.
    return replace(settings, min_size=1, max_size=1)


def database_db(target: Target, settings: PoolSettings) -> Db:
    """The target database itself, in transactions."""
    return Db(
        with_cli_bounds(target.conninfo),
        admin_pool(settings),
        application_name="cruddur-cli",
        behind_pooler=target.behind_pooler,  # no prepared statements: the next server lacks them
    )


def server_db(target: Target, settings: PoolSettings) -> Db:
    """The server's maintenance database, autocommit: CREATE/DROP DATABASE need it."""
    return Db(
        with_cli_bounds(server_conninfo(target.conninfo)),
        admin_pool(settings),
        autocommit=True,
        application_name="cruddur-cli",
        behind_pooler=target.behind_pooler,
    )
