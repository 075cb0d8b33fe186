"""Where the API connects (ApiUrls), worked out once: by `cruddur serve`, which hands the
URLs to the server's workers, and by each worker's app. Outside cruddur.api, which
imports Flask: `cruddur serve` execs the server and needs no Flask of its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from psycopg.conninfo import make_conninfo

from cruddur.config import ApiTimeouts, ConfigError, ReprWithoutSecrets, Settings
from cruddur.db.dead_peer import with_dead_peer_bounds
from cruddur.rds_tls import kept_bundle, secured
from cruddur.urls import check_database, parse


@dataclass(frozen=True, repr=False)
class ApiUrls(ReprWithoutSecrets):
    """Where the API connects, worked out once: its own URL on the primary and, when
    READER_CONNECTION_URL is set, the replica's, and CRUDDUR_LISTEN_URL (the feed cache's);
    RDS endpoints with verify-full TLS."""

    primary: str
    reader: str | None = None
    listen: str | None = None
    # Passwords cut in its repr (these URLs carry the API role's).
    _URL_FIELDS: ClassVar[frozenset[str]] = frozenset({"primary", "reader", "listen"})

    @classmethod
    def from_settings(cls, settings: Settings, primary: str | None = None) -> ApiUrls:
        """`primary` (what `cruddur serve` resolved), else CRUDDUR_API_CONNECTION_URL,
        else CONNECTION_URL; the reader from READER_CONNECTION_URL. A malformed URL is a
        ConfigError here, at start-up, not a log line quoting it later."""
        url = primary or settings.api_connection_url or settings.connection_url
        if url and not primary:
            check_database(
                "CRUDDUR_API_CONNECTION_URL" if settings.api_connection_url else "CONNECTION_URL",
                url,
            )
        if not url:
            raise ConfigError(
                "the API has no database: set CONNECTION_URL (or CRUDDUR_API_CONNECTION_URL), "
                "or run it with `cruddur serve`, which starts the embedded server"
            )
        reader, listen = settings.replica.reader_url, settings.serve.listen_url
        for setting, given in (("READER_CONNECTION_URL", reader), ("CRUDDUR_LISTEN_URL", listen)):
            if given:
                check_database(setting, given)

        def bundle() -> Path:  # fetched only for an RDS endpoint
            return kept_bundle(settings.home)

        return cls(
            secured(url, bundle),
            secured(reader, bundle) if reader else None,
            secured(listen, bundle) if listen else None,
        )

    def environ(self) -> dict[str, str]:
        """The settings that hand these URLs, as they are, to a server's workers: the
        factory they call (create_worker_app) reads them back with from_settings. The
        environment is the one way into a process granian or gunicorn starts that no
        other user can read (a command line can be)."""
        handed = {"CRUDDUR_API_CONNECTION_URL": self.primary}
        if self.reader:
            handed["READER_CONNECTION_URL"] = self.reader
        if self.listen:
            handed["CRUDDUR_LISTEN_URL"] = self.listen
        return handed


def api_url_and_setting(settings: Settings, urls: ApiUrls | None = None) -> tuple[str, str]:
    """The URL the API's pool connects to, and the setting it came from, for messages:
    `urls.primary` when given, else CRUDDUR_API_CONNECTION_URL, else CONNECTION_URL ("" when
    neither is set). Nothing is fetched (an RDS CA bundle) or connected: the host and
    CRUDDUR_POOLER are all a pooler is judged by.

    `cruddur serve` hands its workers the URL it worked out as CRUDDUR_API_CONNECTION_URL
    (ApiUrls.environ): one to CONNECTION_URL's server, port, database and user is
    CONNECTION_URL's."""
    url = (urls.primary if urls else settings.api_connection_url) or settings.connection_url
    if not url:
        return "", "CONNECTION_URL"
    if url == settings.connection_url or _same_login(url, settings.connection_url):
        return url, "CONNECTION_URL"
    return url, "CRUDDUR_API_CONNECTION_URL"


def _same_login(url: str, other: str | None) -> bool:
    if not other:
        return False
    keys = ("host", "port", "dbname", "user")
    try:
        return [parse(url).get(k) for k in keys] == [parse(other).get(k) for k in keys]
    except ConfigError:  # a malformed URL: ApiUrls.from_settings says so
        return False


def api_conninfo(url: str, behind_pooler: bool = False, timeouts: ApiTimeouts | None = None) -> str:
    """The URL with the API's session settings (UTC times, generic plans, and its lock and
    statement timeouts) and its bounds on a database that stops answering
    (db/dead_peer.py), for the pool, its probe and the replica watcher alike; the URL's
    own values win."""
    url = with_dead_peer_bounds(url)
    if behind_pooler:
        # PgBouncer refuses the `options` startup parameter, and RDS Proxy pins a session
        # that changes settings. Without prepared statements a generic plan has nothing to
        # reuse; the time zone is the database's (RDS: UTC; elsewhere, README "Scaling out").
        # The timeouts are the API role's own (ALTER ROLE … SET, which `db roles` does):
        # they hold on every server connection the pooler opens as that role.
        return url
    options = parse(url).get("options", "")
    # Generic plans: the API's queries are key and keyset lookups whose best plan does
    # not depend on the values, and PostgreSQL's default kept re-planning the feed for
    # every call on a large table (README, "Measured").
    app_options = "-c TimeZone=UTC -c plan_cache_mode=force_generic_plan"
    # A write queued behind a lock, unbounded, held its thread for as long as the lock
    # was held, and a few held every thread of a worker (README, "Outages").
    bounds = (timeouts or ApiTimeouts()).as_settings()
    timeout_options = " ".join(f"-c {name}={value}" for name, value in bounds.items())
    # Before the URL's own options: PostgreSQL takes the last -c given for a name.
    return make_conninfo(url, options=f"{timeout_options} {options} {app_options}".strip())
