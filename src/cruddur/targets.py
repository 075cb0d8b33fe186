"""Which database a command acts on: local (CONNECTION_URL or embedded) or production."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from cruddur.config import ConfigError, ReprWithoutSecrets, Settings
from cruddur.embedded import EmbeddedPostgres
from cruddur.ops.roles import API_ROLE
from cruddur.rds_tls import kept_bundle, secured
from cruddur.urls import (
    check,
    check_database,
    database_name,
    looks_like_rds,
    redact,
    same_database,
)


def _no_bundle() -> Path:
    raise ConfigError("no RDS CA bundle for this target")


@dataclass(frozen=True, repr=False)
class Target(ReprWithoutSecrets):
    _URL_FIELDS: ClassVar[frozenset[str]] = frozenset({"url"})  # the password cut in its repr

    url: str
    source: str  # the setting it came from: CONNECTION_URL, PROD_CONNECTION_URL or embedded
    # CONNECTION_URL can name production too (the original's docker-compose set it to
    # PROD_CONNECTION_URL); destructive verbs must then ask just the same.
    production: bool = False
    # A transaction pooler is in front (CRUDDUR_POOLER, an RDS Proxy endpoint): the CLI's
    # pools keep no prepared statements there, as the API's do.
    behind_pooler: bool = False
    # Where migrations connect instead, redacted ("MIGRATION_CONNECTION_URL: postgres://…"):
    # named beside the URL, for that is the connection that changes the schema.
    migrations_through: str = ""
    # The embedded server's port before this command's start moved it (another program
    # had taken it): a `cruddur serve` started before still asks that one.
    moved_from: int | None = field(default=None, compare=False, repr=False)
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
        where = {
            "PROD_CONNECTION_URL": "production",
            "embedded": "local, embedded server",
            "CRUDDUR_API_CONNECTION_URL": "the API's role, CRUDDUR_API_CONNECTION_URL",
        }
        if self.production:
            where["CONNECTION_URL"] = "production, through CONNECTION_URL"
        described = f"{redact(self.url)} ({where.get(self.source, 'local')})"
        if self.migrations_through:
            described += f", migrations through {self.migrations_through}"
        return described


def embedded_server(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.home, settings.pg_bin)


def api_url(settings: Settings, target: Target) -> str:
    """Where the API connects, given the resolved target: CRUDDUR_API_CONNECTION_URL; on
    the embedded server, its API role; otherwise the database's own URL, its owner's
    (`cruddur serve` warns). RDS endpoints with verify-full TLS."""
    if settings.api_connection_url:
        own = Target(
            check_database("CRUDDUR_API_CONNECTION_URL", settings.api_connection_url),
            "CRUDDUR_API_CONNECTION_URL",
        )
        return replace(own, rds_ca_bundle=lambda: kept_bundle(settings.home)).conninfo
    if target.embedded:
        return scram_only(embedded_server(settings).url(target.dbname, role=API_ROLE))
    return target.conninfo


# libpq's require_auth, from PostgreSQL 16's libpq on (psycopg's wheels bundle a newer).
REQUIRE_AUTH_LIBPQ = 160000


def scram_only(url: str) -> str:
    """`url` refusing any server that asks for the password in any way but SCRAM, which is
    all the embedded server uses. While it is down (or has moved to another port), the
    API asks its port again every 0.2 s: a program of anyone's listening there that asked
    for the password in clear text was sent it, and could log in as the API's role. As
    it is, for a libpq that cannot say so."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    if psycopg.pq.version() < REQUIRE_AUTH_LIBPQ:
        return url
    return make_conninfo(url, require_auth="scram-sha-256")


def serve_target(settings: Settings) -> Target:
    """The database `cruddur serve` checks and serves: `api_only`'s, else `resolve`'s."""
    return api_only(settings) or resolve(settings)


def api_only(settings: Settings) -> Target | None:
    """With CRUDDUR_API_CONNECTION_URL set and CONNECTION_URL not, the API role's database:
    a container given that role alone (compose.yaml) serves without the owner's password,
    and `dev token` finds its users there. (Both started the embedded server instead;
    serve checked and named that database while its workers connected to the other.)"""
    if not settings.api_connection_url or settings.connection_url:
        return None
    url = check_database("CRUDDUR_API_CONNECTION_URL", settings.api_connection_url)
    return _settled(Target(url, "CRUDDUR_API_CONNECTION_URL", looks_like_rds(url)), settings)


def resolve(settings: Settings, *, prod: bool = False, start: bool = True) -> Target:
    """The target database; the embedded server is started when it is the one in use."""
    # Both are read whichever is the target (PROD_CONNECTION_URL says whether
    # CONNECTION_URL is production): a malformed one is refused first, by its name.
    for setting, given in (
        ("CONNECTION_URL", settings.connection_url),
        ("PROD_CONNECTION_URL", settings.prod_connection_url),
    ):
        if given:
            check(setting, given)
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
        target = Target(url, "embedded", moved_from=server.moved_from)
    return _settled(target, settings)


def _settled(target: Target, settings: Settings) -> Target:
    target.dbname  # noqa: B018 - fail early on a URL that names no database
    return replace(
        target,
        behind_pooler=settings.replica.behind_pooler(target.url),
        rds_ca_bundle=lambda: kept_bundle(settings.home),
    )
