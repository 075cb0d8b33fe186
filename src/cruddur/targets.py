"""Which database a command acts on: local (CONNECTION_URL or embedded) or production."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from psycopg.conninfo import make_conninfo

from cruddur.config import ConfigError, Settings
from cruddur.db import Db
from cruddur.embedded import EmbeddedPostgres
from cruddur.ops.roles import API_ROLE
from cruddur.rds_tls import secured
from cruddur.urls import database_name, looks_like_rds, parse, redact, same_database


def _no_bundle() -> Path:
    raise ConfigError("no RDS CA bundle for this target")


@dataclass(frozen=True)
class Target:
    url: str
    source: str  # the setting it came from: CONNECTION_URL, PROD_CONNECTION_URL or embedded
    # CONNECTION_URL can name production too (the original's docker-compose set it to
    # PROD_CONNECTION_URL); destructive verbs must then ask just the same.
    production: bool = False
    # The RDS CA bundle's path, fetched on first use (cruddur.aws.ca_bundle).
    rds_ca_bundle: Callable[[], Path] = field(default=_no_bundle, compare=False, repr=False)

    @property
    def conninfo(self) -> str:
        """What to connect with: the URL, with sslmode=verify-full and the RDS CA bundle
        when it names an RDS endpoint (cruddur.rds_tls)."""
        return secured(self.url, self.rds_ca_bundle)

    @property
    def prod(self) -> bool:
        return self.source == "PROD_CONNECTION_URL" or self.production

    @property
    def embedded(self) -> bool:
        return self.source == "embedded"

    @property
    def dbname(self) -> str:
        return database_name(self.url)

    def describe(self) -> str:
        where = {"PROD_CONNECTION_URL": "production", "embedded": "local, embedded server"}
        if self.production:
            where["CONNECTION_URL"] = "production, through CONNECTION_URL"
        return f"{redact(self.url)} ({where.get(self.source, 'local')})"


def embedded_server(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.home, settings.pg_bin)


def api_url(settings: Settings, *, prod: bool = False) -> str:
    """Where the API connects: CRUDDUR_API_CONNECTION_URL; on the embedded server, its
    API role; otherwise the database's own URL, its owner's (`cruddur serve` warns)."""
    if settings.api_connection_url and not prod:
        own = Target(settings.api_connection_url, "CRUDDUR_API_CONNECTION_URL")
        return replace(own, rds_ca_bundle=lambda: _rds_ca_bundle(settings)).conninfo
    target = resolve(settings, prod=prod)
    if target.embedded:
        return embedded_server(settings).url(target.dbname, role=API_ROLE)
    return target.conninfo  # on RDS: verify-full with the CA bundle


def app_db(settings: Settings, *, prod: bool = False) -> Db:
    """The process's pool over the configured database, sized from the settings.

    Not opened yet: a forking server opens it in each worker, after the fork. Sessions
    use UTC, so the times in the JSON PostgreSQL builds always read +00:00. Measured
    in README "Measured": autocommit and no checkout check cut the feed's client CPU.
    """
    url = api_url(settings, prod=prod)  # its own role; verify-full TLS for RDS
    # Every API query is one statement, so autocommit keeps it atomic and saves the
    # BEGIN and COMMIT round trips; reads find a dead connection themselves and retry
    # (Db._read) instead of paying a check round trip on every checkout.
    pooled = settings.replica.behind_pooler(url)
    # fail_fast: while the server is down, requests get their 503 at once (README, "Outages").
    return Db(
        _api_conninfo(url, pooled), settings.pool, application_name="cruddur-api",
        autocommit=True, check=False, behind_pooler=pooled, fail_fast=True,
    )  # fmt: skip


def reader_db(settings: Settings) -> Db | None:
    """The pool over READER_CONNECTION_URL (a replica), or None when it is not set.

    Its callers wait at most a second for a connection: a replica that does not give one
    by then is skipped for the primary, not waited on.
    """
    url = settings.replica.reader_url
    if url is None:
        return None
    url = secured(url, lambda: _rds_ca_bundle(settings))  # an RDS replica: verify-full TLS
    pool = replace(settings.pool, timeout=min(settings.pool.timeout, READER_WAIT_SECONDS))
    pooled = settings.replica.behind_pooler(url)
    return Db(
        _api_conninfo(url, pooled), pool, application_name="cruddur-api-reader",
        autocommit=True, check=False, behind_pooler=pooled,
    )  # fmt: skip


READER_WAIT_SECONDS = 1.0


def _api_conninfo(url: str, behind_pooler: bool = False) -> str:
    if behind_pooler:
        # PgBouncer refuses the `options` startup parameter, and RDS Proxy pins a session
        # that changes settings. Without prepared statements a generic plan has nothing to
        # reuse; the time zone is the database's (RDS: UTC; elsewhere, README "Scaling out").
        return url
    options = parse(url).get("options", "")
    # Generic plans: the API's queries are key and keyset lookups whose best plan does
    # not depend on the values, and PostgreSQL's default kept re-planning the feed for
    # every call on a large table (776 µs against 454 µs a query at 1M activities).
    app_options = "-c TimeZone=UTC -c plan_cache_mode=force_generic_plan"
    return make_conninfo(url, options=f"{options} {app_options}".strip())


def resolve(settings: Settings, *, prod: bool = False, start: bool = True) -> Target:
    """The target database; the embedded server is started when it is the one in use."""
    if prod:
        if not settings.prod_connection_url:
            raise ConfigError(
                "PROD_CONNECTION_URL is not set: export it as "
                "postgresql://USER:PASSWORD@ENDPOINT:5432/cruddur (the RDS instance's "
                "endpoint)"
            )
        target = Target(settings.prod_connection_url, "PROD_CONNECTION_URL")
    elif settings.connection_url:
        url = settings.connection_url
        production = looks_like_rds(url) or bool(
            settings.prod_connection_url and same_database(url, settings.prod_connection_url)
        )
        target = Target(url, "CONNECTION_URL", production)
    else:
        server = embedded_server(settings)
        url = server.start() if start else server.url()
        target = Target(url, "embedded")
    target.dbname  # noqa: B018 - fail early on a URL that names no database
    return replace(target, rds_ca_bundle=lambda: _rds_ca_bundle(settings))


def _rds_ca_bundle(settings: Settings) -> Path:
    from cruddur.aws.ca_bundle import bundle_path  # cryptography, only when RDS is used

    return bundle_path(settings.home, os.environ)
