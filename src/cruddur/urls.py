"""Connection strings: read the database name, swap it, and print them without secrets.

libpq's own parser (through psycopg.conninfo) does the work, so URLs and
`key=value` strings are handled alike and nothing is done by text substitution; a URI
libpq would misread (a password's raw "/" or "@") is refused first. Which server a
string reaches is read as libpq connects: `host` and `hostaddr`, and the PG* variables
for what the string leaves out.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
from urllib.parse import quote, urlencode

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cruddur.config import ConfigError, is_loopback
from cruddur.names import name_too_long

# Where server-level work (CREATE/DROP DATABASE, sessions) connects.
MAINTENANCE_DATABASE = "postgres"

URI_PREFIXES = ("postgresql://", "postgres://")  # as libpq tells a URI from key=value
EXPECTED = "expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
ENCODE_PASSWORD = (
    'percent-encode the password\'s special characters ("/" as %2F, "@" as %40, "?" as %3F, '
    '"%" as %25)'
)


class MalformedUrl(ConfigError):
    """A connection string libpq cannot read, or would read otherwise than written. The
    message says why and never quotes the string: any part of it may be the password."""

    def __init__(self, reason: str, setting: str | None = None) -> None:
        self.reason = reason
        who = setting or "the connection URL"
        super().__init__(f"{who} is malformed: {reason}")


def parse(conninfo: str) -> dict[str, str]:
    """The string's parameters, as libpq reads them. A URI that libpq would read
    otherwise than a person does (a password with a raw "/", "@" or "?": libpq takes
    `user:pass` for `host:port`, or splits at the password's "@") is refused first."""
    problem = _ambiguous_uri(conninfo) or _other_scheme(conninfo)
    if problem:
        raise MalformedUrl(problem)
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    except UnicodeDecodeError:
        # A percent-encoded value that is not UTF-8 (a Latin-1 %E9): the error's own text
        # names a byte of it and where, and the value may be the password.
        raise MalformedUrl(f"a percent-encoded part is not UTF-8 text; {ENCODE_PASSWORD}") from None
    except psycopg.ProgrammingError as exc:
        reason = _reason(conninfo, str(exc))
        if conninfo.startswith(URI_PREFIXES) and conninfo.count("@") > 1:
            # Maybe a query value's "@", maybe a password's "@" that libpq split at.
            reason += f'; if the password has an "@", "/" or "?": {ENCODE_PASSWORD}'
        raise MalformedUrl(reason) from None
    # libpq reads these only when it connects: `serve` took a port of 99999 for a passing
    # outage and answered 503 for ever, where `db create` said what was wrong.
    for port in filter(None, (part.strip() for part in params.get("port", "").split(","))):
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            # Without an "@", libpq reads `user:password` as `host:port`: then the
            # "port" is the password, and is not shown.
            if port.isascii() and port.isdigit() and _has_user_part(conninfo):
                raise MalformedUrl(f"the port {port[:16]!r} is not a number from 1 to 65535")
            raise MalformedUrl(
                "a port is not a number from 1 to 65535 (if the URL has a password, is "
                "the @ before the host missing?)"
            )
    timeout = params.get("connect_timeout", "").strip()
    if timeout and not (timeout.isascii() and timeout.lstrip("-").isdigit()):
        # psycopg took it for its default and psql refused it: `db connect` alone failed.
        raise MalformedUrl("connect_timeout must be a whole number of seconds")
    mode = params.get("sslmode")
    if mode is not None and mode not in SSL_MODES:
        # Shown only as a word: a "?" for an "&" (`sslmode=x?password=…`) puts the rest
        # of the URL in the value.
        shown = f", not {mode[:16]!r}" if _WORD.fullmatch(mode) else ""
        raise MalformedUrl(f"sslmode must be one of {', '.join(SSL_MODES)}{shown}")
    return params


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_WORD = re.compile(r"[A-Za-z-]{1,16}")


def _has_user_part(conninfo: str) -> bool:
    """Whether the port libpq read cannot be a password: key=value pairs name it, and a
    URI with an "@" before its path has its user part there."""
    if not conninfo.startswith(URI_PREFIXES):
        return True
    authority = conninfo.partition("://")[2].partition("/")[0]
    return "@" in authority


def _other_scheme(conninfo: str) -> str | None:
    """A URL of another database's scheme (mysql://…): libpq read it as key=value pairs
    and complained of a parameter with no "="."""
    scheme, separator, _ = conninfo.partition("://")
    scheme = scheme.strip()
    if scheme[:1] in ("'", '"') and scheme[1:] in ("postgresql", "postgres"):
        # Quotes kept as part of the value (a compose file's `environment:` list keeps
        # them): it said `"postgresql:// is not a PostgreSQL URL`.
        return f"it has quotes around it ({scheme[0]}…): give the URL without them"
    if (
        separator
        and scheme
        and "=" not in scheme
        and " " not in scheme
        and not conninfo.startswith(URI_PREFIXES)
    ):
        return f"{scheme[:16]}:// is not a PostgreSQL URL; {EXPECTED}"
    return None


def check(setting: str, conninfo: str) -> str:
    """`conninfo`, read once so that a malformed one is refused naming its setting
    (`PROD_CONNECTION_URL is malformed: unknown connection parameter "foo"`)."""
    try:
        parse(conninfo)
    except MalformedUrl as exc:
        raise MalformedUrl(exc.reason, setting) from None
    return conninfo


def check_database(setting: str, conninfo: str) -> str:
    """`check`, and that the URL names a database whose name PostgreSQL keeps whole: with
    none, libpq connects to the user's namesake; a name over 63 bytes is cut to another.
    A name left to a `service` or to PGDATABASE is theirs. The error names the setting."""
    check(setting, conninfo)
    params = parse(conninfo)
    if not params.get("dbname") and ("service" in params or os.environ.get("PGDATABASE")):
        return conninfo
    try:
        database_name(conninfo)
    except ConfigError as exc:
        raise ConfigError(f"{setting}: {exc}") from None
    return conninfo


def _ambiguous_uri(conninfo: str) -> str | None:
    """Why libpq would misread this URI, or None. libpq takes what comes before the first
    "@" or "/", whichever is first, for `user:password@`: a password (or user name) with
    an "@" gives a second "@" there, and one with a "/" leaves its "@" after the "/".
    After a `user@` or `user:password@`, an "@" in the query (`?sslrootcert=/home/me@x/…`,
    `?password=a@b`) and a "?" in the password are read as meant. Without one, an "@"
    anywhere after the host cannot be told from a password's: a query value's "@" must
    then be written %40 (`?user=admin%40srv`, which libpq decodes)."""
    prefix = next((p for p in URI_PREFIXES if conninfo.startswith(p)), None)
    if prefix is None:
        return None
    rest = conninfo[len(prefix) :]
    slash = rest.find("/")
    if slash < 0:
        at = rest.find("@")
        ambiguous = rest.count("@") > 1 or (at >= 0 and "?" in rest[:at])
    else:
        before, after = rest[:slash], rest[slash:]
        given = before.count("@")  # 1: a user (and password) before the host
        ambiguous = given > 1 or "@" in (after.partition("?")[0] if given else after)
    if ambiguous:
        return (
            'a raw "/", "@" or "?" in the password (or user name) makes libpq read part '
            f'of it as the host, port or database; {ENCODE_PASSWORD} (an "@" in a query '
            "value after a URL with no user: %40)"
        )
    return None


def _reason(conninfo: str, message: str) -> str:
    """libpq's complaint told without the text it quotes, which may be the password.
    A parameter's name is shown only where no password may have spilled into it."""
    # A URI's own password ends at its "@" (_ambiguous_uri made sure); what follows may
    # hold only a `password=` or `sslpassword=` query parameter's.
    tail = conninfo.rpartition("@")[2] if conninfo.startswith(URI_PREFIXES) else conninfo
    quoted = message.split('"')
    name = quoted[-2] if len(quoted) >= 3 else ""  # the last quoted text: the parameter
    # A real parameter's name is a word (`sslmod`); anything else may be a password's
    # piece that libpq read as a query (`u:a/b?c@host`: "c@host/db").
    nameable = "password" not in tail.lower() and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
    if message.startswith(("invalid URI query parameter", "invalid connection option")):
        if nameable and name:
            return f'unknown connection parameter "{name}"'
        return "an unknown connection parameter (its name not shown: it may be a password's)"
    if "key/value separator" in message:
        which = f' ("{name}")' if nameable and name else ""
        count = "no" if message.startswith("missing") else "more than one"
        return f'a query parameter{which} has {count} "="; {EXPECTED}'
    if message.startswith("unexpected spaces"):  # libpq 17 and later
        return "it has a space inside a part; percent-encode spaces as %20"
    if "percent-encoded" in message:
        return f'it has a "%" not followed by two hex digits (or %00); {ENCODE_PASSWORD}'
    if "IPv6 host address" in message:
        return f"an IPv6 address in [brackets] is empty or not closed; {EXPECTED}"
    if message.startswith("unterminated quoted string"):
        return "a quoted value has no closing quote"
    if message.startswith('missing "=" after'):
        if re.match(r"postgres(ql)?\W", conninfo.lstrip(), re.IGNORECASE):
            # `postgresql:/…` or `postgresql//…`: a URL, its "://" mistyped, read by libpq
            # as key=value pairs (it spoke of quoting a value).
            return f'it starts as a URL but not with "postgresql://"; {EXPECTED}'
        return 'a parameter has no "=" (quote a value with spaces in single quotes)'
    return EXPECTED


def database_name(conninfo: str) -> str:
    name = parse(conninfo).get("dbname", "")
    if not name.strip():
        raise ConfigError(f"{redact(conninfo)} names no database; add one, e.g. …/cruddur")
    if name != name.strip():
        # libpq connects to the name as it is, spaces and all; a name stripped here was
        # another database than the URL's to the production check, and `db drop` dropped
        # production's (…/cruddur%20) without a question.
        raise ConfigError(
            f"the database name {name!r} begins or ends with a space (or a tab, or a "
            "no-break space): remove it from the URL"
        )
    problem = name_too_long(name, "the database name")
    if problem:
        raise ConfigError(problem)
    return name


def with_database(conninfo: str, dbname: str) -> str:
    """The same server, user and options, connected to another database."""
    return make_conninfo(conninfo, dbname=dbname)


# The connecting role's own credentials and name besides its password: another role's
# URL made from it must not carry them (the owner's key passphrase went into the
# application roles' URLs, readable by whoever reads the Lambda's configuration).
OWN_CREDENTIALS = ("sslcert", "sslkey", "sslpassword", "passfile", "application_name")


def with_user(conninfo: str, user: str, password: str) -> str:
    """The same server, database and connection options, logged in as another role:
    without the first role's client certificate, key and its passphrase, password file
    and application name."""
    params = {k: v for k, v in parse(conninfo).items() if k not in OWN_CREDENTIALS}
    return make_conninfo("", **{**params, "user": user, "password": password})


def server_conninfo(conninfo: str) -> str:
    """Where to connect for server-level work (CREATE/DROP DATABASE, sessions)."""
    return with_database(conninfo, MAINTENANCE_DATABASE)


def same_database(a: str, b: str) -> bool:
    """Whether two connection strings may name the same database on the same server: the
    same database name, and a server address in common, however each spells it (a name
    or its address, `localhost` or 127.0.0.1 or ::ffff:127.0.0.1 or a socket, a trailing
    dot, another entry of a multi-host list, `host` or `hostaddr`), each read as libpq
    would connect: the string's own parameters, then the PG* variables for those it
    leaves out. Deciding what is production, a false "same" costs a question; a false
    "different" would drop production without one. So what cannot be told from here (what
    a `service` defined in no service file read here fills in) counts as the same; what
    the string itself says, a service cannot change (libpq lets the string's own
    parameters win)."""

    def where(conninfo: str) -> tuple[str | None, set[tuple[str, str]] | None]:
        own = parse(conninfo)
        service = _service_params(own.get("service"))
        if service is None:  # what it fills in is unknown here
            located = ("host" in own or "hostaddr" in own) and "port" in own
            return own.get("dbname") or None, _places(own) if located else None
        params = _filled(own, service)
        dbname = params.get("dbname") or params.get("user") or None  # libpq's default
        return dbname, _places(params)

    if parse(a) == parse(b):  # the same text: no lookup needed
        return True
    name_a, places_a = where(a)
    name_b, places_b = where(b)
    same_name = name_a is None or name_b is None or name_a == name_b
    if places_a is None or places_b is None:
        return same_name
    return same_name and bool(places_a & places_b)


@functools.cache
def _libpq_keywords() -> frozenset[str]:
    """Every parameter libpq knows (a service file may set any of them)."""
    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


@functools.cache
def _environment_variables() -> dict[str, str]:
    """Each libpq parameter's PG* variable (host: PGHOST, hostaddr: PGHOSTADDR, …)."""
    return {
        option.keyword.decode(): option.envvar.decode()
        for option in pq.Conninfo.get_defaults()
        if option.envvar
    }


def connection_params(conninfo: str) -> dict[str, str]:
    """The parameters libpq connects with, in libpq's order: the string's own; then, for
    each it leaves out, its connection service's (`service=NAME` or PGSERVICE, read
    from the service files, _service_params); then its PG* variable from the
    environment (PGHOST, PGHOSTADDR, PGPORT, …)."""
    own = parse(conninfo)
    return _filled(own, _service_params(own.get("service")) or {})


def _filled(own: dict[str, str], service: dict[str, str]) -> dict[str, str]:
    """The string's own parameters, then the service's and the PG* variables for those
    it leaves out (connection_params)."""
    params = {**service, **own}
    for keyword, variable in _environment_variables().items():
        if keyword not in params and variable in os.environ:
            params[keyword] = os.environ[variable]
    return params


def _service_params(named: str | None) -> dict[str, str] | None:
    """The parameters of the connection service `named` (else PGSERVICE's), read as libpq
    reads them: PGSERVICEFILE (or ~/.pg_service.conf) when it exists, then, if the
    service is not there, PGSYSCONFDIR's pg_service.conf; {} without a service. None when
    unknown here: defined in no file read here (libpq's compiled-in folder is not known
    here; README, "TLS to RDS"), or in a file libpq would refuse."""
    name = named or os.environ.get("PGSERVICE")
    if not name:
        return {}
    folder = os.environ.get("PGSYSCONFDIR")
    files = [
        os.environ.get("PGSERVICEFILE") or os.path.expanduser("~/.pg_service.conf"),
        *([os.path.join(folder, "pg_service.conf")] if folder else []),
    ]
    for path in files:
        if not os.path.exists(path):  # libpq goes on to the next file
            continue
        try:
            found = _read_service(path, name)
        except (OSError, _ServiceFileError):  # libpq stops there and does not connect
            return None
        if found is not None:
            return found
    return None


class _ServiceFileError(Exception):
    """A line of the wanted service that libpq refuses."""


_SPACE = " \t\n\r\f\v"  # C's isspace(), which libpq strips with; not str.strip()'s


def _read_service(path: str, name: str) -> dict[str, str] | None:
    """The [name] section of a service file, line by line as libpq's parseServiceFile
    reads it: lines stripped at both ends, empty and # lines skipped, every line outside
    the section ignored, the section ended by the next [ line, each line key=value split
    at its first =, and the first value of a key kept. None when the file does not
    define the service."""
    with open(path, "rb") as handle:
        lines = handle.read().decode("utf-8", "surrogateescape").split("\n")
    params: dict[str, str] | None = None
    for raw in lines:
        line = raw.strip(_SPACE)
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if params is not None:
                break
            if line.startswith(f"[{name}]"):
                params = {}
            continue
        if params is None:
            continue
        key, equals, value = line.partition("=")
        if not equals or key == "service" or key not in _libpq_keywords():
            raise _ServiceFileError(key)
        params.setdefault(key, value)
    return params


def _places(params: dict[str, str]) -> set[tuple[str, str]]:
    """Every (address, port) the parameters may reach: each host entry's name and
    addresses with its hostaddr entry's, since libpq connects to the hostaddr and
    checks TLS and passwords against the host."""
    hosts = params.get("host", "").split(",")
    hostaddrs = params.get("hostaddr", "").split(",") if params.get("hostaddr") else []
    ports = params.get("port", "").split(",")
    entries: list[set[str]] = []
    if not hostaddrs or len(hostaddrs) == len(hosts):
        for host, hostaddr in zip(hosts, hostaddrs or [""] * len(hosts), strict=True):
            found = _addresses(hostaddr) if hostaddr.strip() else set()
            if host.strip() or not found:  # no host and no hostaddr: libpq's default
                found |= _addresses(host)
            entries.append(found)
    else:  # libpq would refuse to connect: count every entry as anywhere the others are
        entries = [set().union(*map(_addresses, hosts + hostaddrs))]
    if len(ports) == 1:
        ports *= len(entries)
    pairs = (
        zip(entries, ports, strict=True)
        if len(ports) == len(entries)
        else ((found, port) for found in entries for port in ports)
    )
    return {(address, _port_number(port)) for found, port in pairs for address in found}


def _port_number(port: str) -> str:
    """A port as libpq reads it: 05432 is 5432 (compared as text, a leading zero made
    production's URL another server's, and `db drop` asked nothing); blank, 5432."""
    port = port.strip()
    if port.isascii() and port.isdigit():
        return str(int(port))
    return port or "5432"


THIS_MACHINE = "this machine"  # loopback addresses and Unix sockets alike


def _canonical(address: str) -> str:
    """An IP address in one spelling (::ffff:10.0.0.1 as 10.0.0.1, 0:0::1 as ::1, no
    zone); any other name as it is."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def _addresses(host: str) -> set[str]:
    """The host entry's name and the addresses it resolves to now. The name is always
    kept: two lookups of one name may give different records (or one may fail), and one
    name must never compare as two servers."""
    name = _canonical(host.strip().strip("[]").rstrip(".").lower())
    if not name or name.startswith("/") or name.startswith("@"):  # a Unix socket folder
        return {THIS_MACHINE}
    try:
        found = {_canonical(info[4][0]) for info in socket.getaddrinfo(name, None)}
    except (OSError, UnicodeError):
        found = set()
    local = {a for a in found if _reaches_this_machine(a)}
    if local or _reaches_this_machine(name):
        found = (found - local) | {THIS_MACHINE}
    return found | {name}


def _reaches_this_machine(address: str) -> bool:
    """Whether connecting to `address` reaches a server on this machine: loopback, the
    unspecified 0.0.0.0 and :: (Linux connects them to a local listener), and this
    machine's own interfaces' addresses (a socket can be bound to them). Counted as
    another server, `…@0.0.0.0/cruddur` was not production's 127.0.0.1 to `db drop`."""
    if is_loopback(address):
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.is_unspecified:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


def _hosts(conninfo: str) -> list[str]:
    """Every name the string may connect to or check TLS against: host and hostaddr
    entries, PGHOST and PGHOSTADDR for those it leaves out."""
    params = connection_params(conninfo)
    return [
        h.strip().rstrip(".").lower()
        for key in ("host", "hostaddr")
        for h in params.get(key, "").split(",")
    ]


# The RDS endpoints' domains: AWS's, and its China regions' (a review found those left
# on libpq's `prefer`: any certificate, or none, taken).
RDS_DOMAINS = (".rds.amazonaws.com", ".rds.amazonaws.com.cn")


def rds_hosts(conninfo: str) -> list[str]:
    """The Amazon RDS endpoints (…rds.amazonaws.com, ….com.cn) among the string's hosts."""
    return [h for h in _hosts(conninfo) if h.endswith(RDS_DOMAINS)]


def looks_like_rds(conninfo: str) -> bool:
    """An Amazon RDS endpoint (…rds.amazonaws.com[.cn]), in `host` or `hostaddr` or PGHOST:
    a cloud database, not a local one."""
    return bool(rds_hosts(conninfo))


def looks_like_rds_proxy(conninfo: str) -> bool:
    """An RDS Proxy endpoint (NAME.proxy-XXXX.REGION.rds.amazonaws.com): a transaction
    pooler, with what that forbids (prepared statements kept, session state)."""
    return any(".proxy-" in h for h in rds_hosts(conninfo))


def redact(conninfo: str) -> str:
    """A URL for people to read: every part but the password, which shows as ***."""
    try:
        return _url(parse(conninfo), show_secrets=False)
    except ValueError:  # ConfigError, and what psycopg raises on undecodable bytes
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
    # sslpassword, oauth_client_secret: any option that carries a secret shows as *** too.
    shown = {k: ("***" if not show_secrets and _holds_secret(k) else v) for k, v in params.items()}
    query = f"?{urlencode(shown, safe='*')}" if shown else ""
    return f"postgresql://{auth}{netloc}/{dbname}{query}"


def _holds_secret(option: str) -> bool:
    return "password" in option or "secret" in option or option in SECRET_OPTIONS


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


# libpq's options that hold a secret besides the password (a client key's passphrase;
# PostgreSQL 18's OAuth client secret). libpq reads none of them from the environment.
SECRET_OPTIONS = ("sslpassword", "oauth_client_secret")


def without_secrets(conninfo: str) -> tuple[str, str | None, dict[str, str]]:
    """The conninfo without the password and SECRET_OPTIONS, the password, and the
    others: for a command line, where `ps` shows every argument to every user."""
    rest, password = without_password(conninfo)
    params = parse(rest)
    secrets = {name: params.pop(name) for name in SECRET_OPTIONS if name in params}
    return (make_conninfo("", **params) if secrets else rest), password, secrets
