"""Connection strings: read the database name, swap it, and print them without secrets.

libpq's own parser (through psycopg.conninfo) does the work, so URLs and
`key=value` strings are handled alike and nothing is done by text substitution.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cruddur.config import ConfigError

# Where server-level work (CREATE/DROP DATABASE, sessions) connects.
MAINTENANCE_DATABASE = "postgres"


def parse(conninfo: str) -> dict[str, str]:
    try:
        return {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    except psycopg.ProgrammingError as exc:
        # libpq's message may quote the string it could not parse: keep it out.
        raise ConfigError(
            "the connection URL is malformed; expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        ) from exc


def database_name(conninfo: str) -> str:
    name = parse(conninfo).get("dbname", "").strip()
    if not name:
        raise ConfigError(f"{redact(conninfo)} names no database; add one, e.g. …/cruddur")
    return name


def with_database(conninfo: str, dbname: str) -> str:
    """The same server, user and options, connected to another database."""
    return make_conninfo(conninfo, dbname=dbname)


def with_user(conninfo: str, user: str, password: str) -> str:
    """The same server and database, logged in as another role."""
    return make_conninfo(conninfo, user=user, password=password)


def server_conninfo(conninfo: str) -> str:
    """Where to connect for server-level work (CREATE/DROP DATABASE, sessions)."""
    return with_database(conninfo, MAINTENANCE_DATABASE)


def same_database(a: str, b: str) -> bool:
    """Whether two connection strings name the same database on the same server(s)."""

    def where(conninfo: str) -> tuple[str, str, str]:
        params = parse(conninfo)
        host = params.get("host") or params.get("hostaddr") or "localhost"
        return host.lower(), params.get("port") or "5432", params.get("dbname", "")

    return where(a) == where(b)


def looks_like_rds(conninfo: str) -> bool:
    """An Amazon RDS endpoint (…rds.amazonaws.com): a cloud database, not a local one."""
    host = parse(conninfo).get("host", "").lower()
    return any(h.rstrip(".").endswith(".rds.amazonaws.com") for h in host.split(","))


def looks_like_rds_proxy(conninfo: str) -> bool:
    """An RDS Proxy endpoint (NAME.proxy-XXXX.REGION.rds.amazonaws.com): a transaction
    pooler, with what that forbids (prepared statements kept, session state)."""
    host = parse(conninfo).get("host", "").lower()
    return any(
        ".proxy-" in h and h.rstrip(".").endswith(".rds.amazonaws.com") for h in host.split(",")
    )


def redact(conninfo: str) -> str:
    """A URL for people to read: every part but the password, which shows as ***."""
    try:
        return _url(parse(conninfo), show_secrets=False)
    except ConfigError:
        return "<malformed connection URL>"


def as_url(conninfo: str) -> str:
    """The connection string as a postgresql:// URL, password included (for a setting,
    never for printing)."""
    return _url(parse(conninfo), show_secrets=True)


def _url(params: dict[str, str], *, show_secrets: bool) -> str:
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = quote(params.pop("dbname", ""), safe="")
    shown_password = quote(password, safe="") if show_secrets and password is not None else "***"
    auth = f"{user}:{shown_password}@" if password is not None else (f"{user}@" if user else "")
    netloc = ",".join(_join_host_port(h, p) for h, p in _host_ports(host, port))
    # sslpassword and the like: any option that carries a secret shows as *** too.
    shown = {k: ("***" if "password" in k and not show_secrets else v) for k, v in params.items()}
    query = f"?{urlencode(shown, safe='*')}" if shown else ""
    return f"postgresql://{auth}{netloc}/{dbname}{query}"


def _host_ports(host: str, port: str) -> list[tuple[str, str]]:
    hosts = host.split(",") if host else [""]
    ports = port.split(",") if port else [""]
    if len(ports) == 1:
        ports = ports * len(hosts)
    return list(zip(hosts, ports, strict=False))


def _join_host_port(host: str, port: str) -> str:
    if host.startswith("/"):  # a Unix socket folder
        host = quote(host, safe="")
    elif ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def without_password(conninfo: str) -> tuple[str, str | None]:
    """Split off the password so that it can travel in PGPASSWORD, not on a command line."""
    params = parse(conninfo)
    password = params.pop("password", None)
    return make_conninfo("", **params), password
