"""Settings from the environment, read in one place.

Every knob Cruddur has is an environment variable listed here (and in `.env.example`).
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from cruddur.errors import Problem


class ConfigError(Problem, ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


def redact_endpoint(url: str | None) -> str:
    """An OTLP endpoint without its query or credentials (an API key can ride in either).
    TelemetrySettings has checked it (check_otlp_endpoint): it parses."""
    from urllib.parse import urlsplit  # as check_otlp_endpoint

    try:
        parts = urlsplit(url or "")
    except ValueError:  # only when built by hand: from_env refuses it
        return "<malformed endpoint>"
    address = parts.netloc.rpartition("@")[2]  # host[:port], an IPv6 one in its brackets
    return f"{parts.scheme}://{address}{parts.path}"


class ReprWithoutSecrets:
    """A settings dataclass's repr with its connection URLs' passwords and its OTLP
    endpoints' query and credentials cut: a settings object in a traceback, a debugger
    or a debug line shows no secret. (Its classes are @dataclass(repr=False), or the
    generated repr would replace this one.)"""

    _URL_FIELDS: ClassVar[frozenset[str]] = frozenset()
    _ENDPOINT_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def __repr__(self) -> str:
        shown = []
        for each in fields(self):  # type: ignore[arg-type]
            if not each.repr:
                continue
            if callable(self.__dict__.get(f"_{each.name}")):  # _ParsedOnRead, not yet read
                shown.append(f"{each.name}=<not read yet>")
                continue
            value = getattr(self, each.name)
            if value is not None and each.name in self._URL_FIELDS:
                # Here, not above: dataclasses writes each class's signature with its
                # defaults' repr at import, and urls imports psycopg (~0.1 s), which
                # `--help` must not need; urls also imports this module.
                from cruddur.urls import redact

                value = redact(value)
            elif value is not None and each.name in self._ENDPOINT_FIELDS:
                value = redact_endpoint(value)
            shown.append(f"{each.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


N = TypeVar("N", int, float)


def _number(
    env: Mapping[str, str],
    name: str,
    default: N,
    *,
    minimum: N,
    kind: type[N],
    maximum: N | None = None,
) -> N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
        usable = math.isfinite(value)  # float() takes "nan" and "inf": never a setting's
    except ValueError:
        usable = False
    if not usable:
        noun = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name} must be {noun}, not {raw!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {_plain(minimum)}, not {raw}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {_plain(maximum)}, not {raw}")
    return value


def _plain(bound: float) -> str:
    """A bound as people write it: 0, not 0.0; 0.1 as it is."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def browser_origin(name: str, given: str) -> str:
    """`given` as a browser sends it in Origin (scheme and host in lower case, no default
    port), which CORS compares as text; ConfigError for what no browser sends: a path,
    no scheme, `*`. (Taken as they were, such values never matched, without a word.)"""
    from urllib.parse import urlsplit

    wanted = f"{name} lists origins such as https://cruddur.example or http://localhost:3000"
    try:
        parts = urlsplit(given)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{wanted}; {given!r} is not one") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        raise ConfigError(f"{wanted}; {given!r} is not one")
    if parts.path or parts.query or parts.fragment:
        raise ConfigError(f"{wanted}: an origin has no path or query, as {given!r} does")
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    shown_port = "" if port is None or port == _DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{shown_port}"


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    return _number(env, name, default, minimum=1, maximum=65_535, kind=int)


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in _OFF:
        return False
    raise ConfigError(f"{name} must be 1 or 0, not {raw!r}")


_OFF = ("", "0", "false", "no", "off")  # what a flag says off with (blank: unset)


def debug_enabled() -> bool:
    """CRUDDUR_DEBUG=1: show tracebacks of unexpected errors (read alone: it must work
    even when the other settings are broken)."""
    # Spelled as the other flags are off (CRUDDUR_DEBUG=false turned tracebacks on).
    return os.environ.get("CRUDDUR_DEBUG", "").strip().lower() not in _OFF


def _default_home() -> Path:
    # In a checkout (editable install) the state folder sits beside pyproject.toml;
    # an installed package keeps it in the user's home instead.
    project_root = Path(__file__).resolve().parents[2]
    if (project_root / "pyproject.toml").is_file():
        return project_root / ".cruddur"
    return Path.home() / ".cruddur"


def home_from_env(env: Mapping[str, str]) -> Path:
    """CRUDDUR_HOME, read alone: the AWS commands need only it (the RDS CA bundle), and a
    malformed database or API setting must not stop them. A leading ~ is the user's home
    (a .env or a quoted value leaves it to us: it made a folder named ~ here)."""
    given = env.get("CRUDDUR_HOME", "").strip()
    if not given:
        return _default_home()
    home = Path(given).expanduser().resolve()
    if home.exists() and not home.is_dir():
        # Said of the setting: the folder checks' "remove it" was said of /dev/null and
        # /etc/passwd, paths the user had only named here.
        raise ConfigError(
            f"CRUDDUR_HOME names {home}, which is not a folder: set it to a folder of your "
            "own (made if missing), or unset it"
        )
    return home


# Connections one process's pool may hold at most: more than RDS allows any instance
# (5,000) across a few workers. Unbounded, 10**20 was taken, and the worker's memory grew
# by ~70 MB a second queueing connections to open while health hung.
MAX_POOL_SIZE = 1000


@dataclass(frozen=True)
class PoolSettings:
    min_size: int = 1
    max_size: int = 10
    timeout: float = 10.0  # seconds a caller waits for a free connection
    connect_timeout: int = 5  # seconds libpq waits for the server


DEV_ISSUER = "cruddur-dev"
DEV_CLIENT_ID = "cruddur-dev"

# The settings that say "check Cognito's tokens". Any of them present, or any other
# AWS_COGNITO_* variable (a misspelt one), and the API checks Cognito's tokens or
# refuses to start: it never falls back to the dev key pair because one was missing.
COGNITO_SETTINGS = (
    "AWS_COGNITO_USER_POOL_ID",
    "AWS_COGNITO_USER_POOL_CLIENT_ID",
    "CRUDDUR_JWKS_URL",
)
AUTH_MODES = ("cognito", "dev")
# A user pool id: its region, "_", letters and digits (ca-central-1_AbCd1234).
_POOL_ID = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+_[0-9A-Za-z]+")
POOL_ID = _POOL_ID  # for the commands that take a pool id as an option


@functools.lru_cache(maxsize=1024)  # asked on each signed-in request with a dev key
def is_loopback(host: str) -> bool:
    """Whether `host` is an address only this machine can reach (127.0.0.0/8, ::1, and
    127.0.0.0/8 written as IPv6, ::ffff:127.0.0.1)."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


@dataclass(frozen=True, repr=False)
class AuthSettings(ReprWithoutSecrets):
    """Whose tokens the API accepts: a Cognito user pool's, or the local dev key pair's."""

    _ENDPOINT_FIELDS = frozenset({"jwks_url"})  # a presigned URL's signature is its query

    issuer: str  # the `iss` every token must carry
    client_id: str  # the app client the token must be for (`client_id` claim)
    jwks_url: str  # where the public keys are (https://, http:// or file://)
    dev: bool  # True: the local key pair under CRUDDUR_HOME/auth, for development
    # Why these settings cannot check tokens; only the API minds (see `checked`), so
    # other commands that read AWS_COGNITO_USER_POOL_ID work with a partial setup.
    problem: str | None = None
    # With CRUDDUR_AUTH=dev: the Cognito settings that are set but not used.
    ignored: tuple[str, ...] = ()
    explicit: bool = False  # CRUDDUR_AUTH said which
    # Set when no token can sign in here (why, for the 401): the dev key pair would have
    # been the issuer, on an address others reach.
    disabled: str | None = None

    def checked(self) -> AuthSettings:
        """Self, or ConfigError when the settings cannot check tokens."""
        if self.problem:
            raise ConfigError(self.problem)
        return self

    def checked_for(self, host: str) -> AuthSettings:
        """The settings to serve with on `host`, or ConfigError. The dev key pair's
        private half sits on this machine, so its tokens prove nothing to others: off
        loopback, CRUDDUR_AUTH=dev is an error, and with no Cognito setting at all (a
        container) nobody can sign in, while reads still work."""
        self.checked()
        if not self.dev or is_loopback(host):
            return self
        if self.explicit:
            raise ConfigError(
                f"CRUDDUR_AUTH=dev: the development key pair signs in only on a loopback "
                f"address, not on {host}: set AWS_COGNITO_USER_POOL_ID and "
                "AWS_COGNITO_USER_POOL_CLIENT_ID, or listen on 127.0.0.1"
            )
        return replace(
            self,
            dev=False,
            disabled=(
                "sign-in is not set up on this server: it has no Cognito user pool "
                "(AWS_COGNITO_USER_POOL_ID, AWS_COGNITO_USER_POOL_CLIENT_ID), and the "
                "development key pair works only on 127.0.0.1"
            ),
        )

    @classmethod
    def from_env(cls, env: dict[str, str], home: Path) -> AuthSettings:
        mode = env.get("CRUDDUR_AUTH", "").strip().lower()
        # Set to something: compose files pass unset variables on as blank ones, and a
        # blank one alone is no setting. Blank beside a set one is a missing one.
        present = sorted(
            name
            for name, value in env.items()
            if (name in COGNITO_SETTINGS or name.startswith("AWS_COGNITO_")) and value.strip()
        )
        dev = cls(
            issuer=DEV_ISSUER,
            client_id=DEV_CLIENT_ID,
            jwks_url=(home / "auth" / "jwks.json").as_uri(),
            dev=True,
            ignored=tuple(present),
            explicit=mode == "dev",
        )
        if mode not in ("", *AUTH_MODES):
            return replace(
                dev, dev=False, problem=f"CRUDDUR_AUTH must be cognito or dev, not {mode!r}"
            )
        if mode == "dev" or (not mode and not present):
            return dev
        return cls._cognito(env, present)

    @classmethod
    def _cognito(cls, env: dict[str, str], present: list[str]) -> AuthSettings:
        pool_id = env.get("AWS_COGNITO_USER_POOL_ID", "").strip()
        client_id = env.get("AWS_COGNITO_USER_POOL_CLIENT_ID", "").strip()
        jwks_url = env.get("CRUDDUR_JWKS_URL", "").strip()
        problems = []
        if not pool_id:
            state = "blank" if "AWS_COGNITO_USER_POOL_ID" in env else "not set"
            problems.append(f"AWS_COGNITO_USER_POOL_ID is {state}")
        elif not _POOL_ID.fullmatch(pool_id):
            problems.append(
                f"AWS_COGNITO_USER_POOL_ID must look like <region>_<id> "
                f"(e.g. ca-central-1_AbCd1234), not {pool_id!r}"
            )
        if not client_id:
            state = "blank" if "AWS_COGNITO_USER_POOL_CLIENT_ID" in env else "not set"
            problems.append(
                f"AWS_COGNITO_USER_POOL_CLIENT_ID is {state} (tokens are checked against the "
                "user pool's app client id)"
            )
        if jwks_url and not _fetchable(jwks_url):
            # Taken as it was, every signed-in request got a 503 ("unknown url type").
            problems.append(
                "CRUDDUR_JWKS_URL must be an https://, http:// or file:// URL, with no space "
                "or control character, in ASCII (percent-encode a path's other characters, "
                "give a host's punycode)"
            )
        elif jwks_url and _has_credentials(jwks_url):
            # urllib takes user:password@ as part of the host name: every signed-in
            # request got a 503 ("Name or service not known"). A key set is public.
            problems.append(
                "CRUDDUR_JWKS_URL must not hold a user or password (a key set is public)"
            )
        unknown = [name for name in present if name not in COGNITO_SETTINGS]
        problem = None
        if problems:
            shown = ", ".join(present) if present else "CRUDDUR_AUTH=cognito"
            problem = f"sign-in is set up only in part ({shown} given): " + "; ".join(problems)
            for name in unknown:
                close = difflib.get_close_matches(name, COGNITO_SETTINGS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problem += f"; {name} is not a setting Cruddur reads{hint}"
            problem += ". Complete them, or unset them all (or CRUDDUR_AUTH=dev) for dev tokens"
        region = pool_id.partition("_")[0]
        issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"
        return cls(
            issuer=issuer,
            client_id=client_id,
            jwks_url=jwks_url or f"{issuer}/.well-known/jwks.json",
            dev=False,
            problem=problem,
        )


def _fetchable(url: str) -> bool:
    """Whether urllib could fetch the key set from `url`: https:// or http:// with a host
    (and a port that is a number), or file:// with a path."""
    from urllib.parse import urlsplit

    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return False  # urllib refuses it at each fetch ("URL can't contain control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number from 0 to 65535
    except ValueError:
        return False
    if parts.scheme in ("https", "http"):
        # urllib sends the URL as it is, in ASCII (the host too, IDNA not applied): a
        # character past it (an é, a zero-width space or BOM pasted in) failed every fetch.
        return bool(parts.hostname) and url.isascii()
    return parts.scheme == "file" and bool(parts.path)


def _has_credentials(url: str) -> bool:
    from urllib.parse import urlsplit

    return "@" in urlsplit(url).netloc


# ASCII digits only (\d takes full-width ones, which the server refuses mid-migration);
# a bare number is milliseconds, as PostgreSQL reads it.
# Spaces only between the number and its unit, as PostgreSQL takes them ('1 0s' is none).
_DURATION = re.compile(r"^(?P<number>[0-9]+) *(?P<unit>ms|s|min|h|d)?$")
_DURATION_MS = {None: 1, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_MAX_MS = 2**31 - 1  # PostgreSQL's limit for lock_timeout and statement_timeout


def duration(name: str, raw: str) -> str:
    """A PostgreSQL duration setting as text ('5s', '500ms', '2min', '0' for off)."""
    match = _DURATION.match(raw.strip())
    if not match:
        raise ConfigError(
            f"{name} must be a duration, a whole number of ms, s, min, h or d, such as 5s, "
            f"500ms or 2min (0: off; a bare number is milliseconds), not {raw!r}"
        )
    # Leading zeros are no length (and int() refuses over 4,300 digits).
    number = match["number"].lstrip("0") or "0"
    # Checked here, not by the server once the first migration has begun.
    if len(number) > 10 or int(number) * _DURATION_MS[match["unit"]] > _DURATION_MAX_MS:
        raise ConfigError(f"{name} is too long: at most 596h (24 days), not {raw!r}")
    return number + (match["unit"] or "")


def _duration(env: Mapping[str, str], name: str, default: str) -> str:
    """Setting `name` as a duration (`duration`), or `default` when unset or empty."""
    return duration(name, env.get(name, "") or default)


# lock_timeout's limit (INT_MAX milliseconds): the longest a migrate can wait for the lock.
MIGRATION_LOCK_WAIT_MAX = 2_147_483.0


@dataclass(frozen=True)
class MigrationSettings:
    """How `cruddur db migrate` and `rollback` behave (README "Changing the schema")."""

    lock_timeout: str = "5s"  # how long a statement waits for a table lock, then fails
    statement_timeout: str = "0"  # how long one statement may run; 0: no limit
    lock_wait: float = 60.0  # seconds to wait for another migrate to finish
    connect_timeout: int = 5

    @classmethod
    def from_env(cls, env: dict[str, str], connect_timeout: int) -> MigrationSettings:
        defaults = cls()
        return cls(
            lock_timeout=_duration(env, "CRUDDUR_MIGRATION_LOCK_TIMEOUT", defaults.lock_timeout),
            statement_timeout=_duration(
                env, "CRUDDUR_MIGRATION_STATEMENT_TIMEOUT", defaults.statement_timeout
            ),
            lock_wait=_number(
                env,
                "CRUDDUR_MIGRATION_LOCK_WAIT",
                defaults.lock_wait,
                minimum=0.0,
                maximum=MIGRATION_LOCK_WAIT_MAX,
                kind=float,
            ),
            connect_timeout=connect_timeout,
        )


@dataclass(frozen=True)
class ApiTimeouts:
    """How long one of the API's statements may wait for a lock, and run (README
    "Outages"). Unbounded, writes queued behind a table or row lock held every thread of
    a worker, /api/health's too, for as long as the lock was held; the service promises
    no request waits over 5 s, so a statement ends (503 `database_busy`) well within it.

    1 s for a lock: in a one-off run against `serve`'s 2 workers of 4 threads under a
    held table lock, 2 s let /api/health (which promises 2 s) take longer; 1 s did not.
    A statement's run, 4 s."""

    lock_timeout: str = "1s"
    statement_timeout: str = "4s"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiTimeouts:
        defaults = cls()
        return cls(
            lock_timeout=_duration(env, "CRUDDUR_API_LOCK_TIMEOUT", defaults.lock_timeout),
            statement_timeout=_duration(
                env, "CRUDDUR_API_STATEMENT_TIMEOUT", defaults.statement_timeout
            ),
        )

    def as_settings(self) -> dict[str, str]:
        """PostgreSQL's names for them: for `-c` options and ALTER ROLE … SET."""
        return {"lock_timeout": self.lock_timeout, "statement_timeout": self.statement_timeout}


SERVERS = ("gunicorn", "granian")
MAX_HEADER_TIMEOUT = 60.0  # granian's own limit
# Past a machine's cores more processes add memory and database connections (a pool
# each), not throughput; 3,000 workers filled this 24 GB machine and set off the OOM
# killer. 64 is far past the largest task we run (16 vCPU). Threads wait on the database:
# more than the pool can serve only queue.
MAX_WORKERS = 64
MAX_THREADS = 256


@dataclass(frozen=True, repr=False)
class ServeSettings(ReprWithoutSecrets):
    _URL_FIELDS = frozenset({"listen_url"})

    host: str = "127.0.0.1"
    port: int = 4567  # the original Cruddur backend's port
    workers: int = 2  # processes; one per core
    threads: int = 4  # per worker; requests wait on the database, not the CPU
    server: str = "granian"  # measured faster on the feed: README "Measured"
    # Seconds a client has to send a request's headers (granian); idle sockets and
    # keep-alives are closed after it too. granian allows at most 60.
    header_timeout: float = 10.0
    cors_origins: tuple[str, ...] = ("http://localhost:3000",)
    # Each worker keeps the home feed's first page (services/feed_cache.py); off: every
    # request reads the database.
    feed_cache: bool = True
    # Where the feed cache LISTENs: the primary, directly (not a replica, not a proxy).
    listen_url: str | None = None  # None: the API's own database URL

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ServeSettings:
        defaults = cls()
        server = env.get("CRUDDUR_SERVER", "").strip() or defaults.server
        if server not in SERVERS:
            raise ConfigError(f"CRUDDUR_SERVER must be one of {', '.join(SERVERS)}, not {server!r}")

        # The original's names: the front end's URL (by default the local one), and the
        # backend's own (for its docs).
        def listed(name: str) -> list[str]:
            given = [o.strip().rstrip("/") for o in env.get(name, "").split(",") if o.strip()]
            return [browser_origin(name, origin) for origin in given]

        # "none": no other origin's page may call the API (the page it serves is its own
        # origin); production's template says so rather than admit localhost:3000.
        if env.get("FRONTEND_URL", "").strip().lower() == "none":
            frontend: list[str] = []
        else:
            frontend = listed("FRONTEND_URL") or list(defaults.cors_origins)
        origins = frontend + listed("BACKEND_URL")
        header_timeout = _number(
            env, "CRUDDUR_HEADER_TIMEOUT", defaults.header_timeout, minimum=0.1, kind=float
        )
        if header_timeout > MAX_HEADER_TIMEOUT:
            raise ConfigError(
                f"CRUDDUR_HEADER_TIMEOUT must be at most {MAX_HEADER_TIMEOUT:g} (seconds), "
                f"not {header_timeout:g}"
            )
        return cls(
            host=env.get("CRUDDUR_HOST", "").strip() or defaults.host,
            port=_port(env, "PORT", defaults.port),
            workers=_number(
                env, "CRUDDUR_WORKERS", defaults.workers, minimum=1, maximum=MAX_WORKERS, kind=int
            ),
            threads=_number(
                env, "CRUDDUR_THREADS", defaults.threads, minimum=1, maximum=MAX_THREADS, kind=int
            ),
            server=server,
            header_timeout=header_timeout,
            cors_origins=tuple(dict.fromkeys(origins)),
            feed_cache=_flag(env, "CRUDDUR_FEED_CACHE", defaults.feed_cache),
            listen_url=env.get("CRUDDUR_LISTEN_URL", "").strip() or None,
        )


LOG_FORMATS = ("json", "text")
# OpenTelemetry's standard samplers (OTEL_TRACES_SAMPLER).
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


# One entry of OTEL_EXPORTER_OTLP_HEADERS as the SDK reads it (W3C baggage style, name=value,
# the value URL-encoded or, leniently, plain text without commas, semicolons, quotes or
# backslashes). Anything else the SDK skips, and its warning quotes the whole entry:
# the API key with it. So a malformed entry stops the start, named by position only.
_OTLP_HEADER = re.compile(
    r"[ \t]*[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7a\x7c\x7e]+[ \t]*="
    r"[ \t]*[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*[ \t]*"
)


def check_otlp_headers(name: str, value: str) -> None:
    for position, entry in enumerate(re.split(r"[ \t]*,[ \t]*", value), start=1):
        if entry.strip() and not _OTLP_HEADER.fullmatch(entry.strip()):  # blanks: skipped
            raise ConfigError(
                f"{name}: entry {position} is not name=value (e.g. "
                "x-honeycomb-team=YOUR_KEY); it is not shown here, as it may hold a key"
            )
        header, _, given = entry.partition("=")
        if entry.strip() and not given.strip():
            # x-honeycomb-team=${HONEYCOMB_API_KEY} with the variable unset: every export
            # was refused (401), and only a log line much later said so.
            raise ConfigError(
                f"{name}: {header.strip()} has no value (was a variable meant to fill it unset?)"
            )
        if entry.strip() and not _HEADER_NAME.fullmatch(_decoded(header)):
            # Its name is %-decoded too: x%0Ateam passed, and every export failed on it.
            raise ConfigError(
                f"{name}: entry {position}'s name, its %-escapes read as the exporter reads "
                "them, is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"
            )
        if entry.strip() and not _carried_in_a_header(given.strip()):
            # The exporter reads %-escapes first: %0D%0A passed here, requests refused the
            # value on every export, and its error quoted it, the key in the log whole.
            raise ConfigError(
                f"{name}: {header.strip()}'s value, its %-escapes read as the exporter reads "
                "them, holds what a header cannot carry (a line break, a control character, "
                "or a character beyond Latin-1); it is not shown here, as it may hold a key"
            )


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110's token


def _decoded(text: str) -> str:
    from urllib.parse import unquote  # as opentelemetry.util.re.parse_env_headers does

    return unquote(text).strip()


def _carried_in_a_header(value: str) -> bool:
    decoded = _decoded(value)
    try:
        decoded.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in decoded)


# The OTLP endpoint settings, the traces' own first (the SDK's order), and the headers'.
OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
OTLP_HEADERS = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
_ENDPOINT_FORM = "want http(s)://host[:port][/path]"


def check_otlp_endpoint(name: str, value: str) -> None:
    """Refuse an OTLP endpoint the exporter could not use (its URL library raised
    ValueError on the first export, or it sent elsewhere than meant): naming `name` and
    the reason, never quoting the URL (its userinfo or query may hold a key)."""

    def refused(reason: str) -> ConfigError:
        return ConfigError(f"{name}: {reason} ({_ENDPOINT_FORM})")

    from urllib.parse import urlsplit  # only with an endpoint set: ~0.7 ms for any command

    try:
        parts = urlsplit(value)
    except ValueError as exc:  # "Invalid IPv6 URL", a netloc NFKC changes
        unmatched = "IPv6" in str(exc)
        why = "an IPv6 address's [ or ] is unmatched" if unmatched else "it is malformed"
        raise refused(why) from None
    if "://" not in value:  # host:4318 reads as the scheme "host"
        raise refused("it does not start with http:// or https://")
    if parts.scheme not in ("http", "https"):
        shown = f'"{parts.scheme}" ' if 0 < len(parts.scheme) <= 10 else ""
        raise refused(f"the scheme {shown}is not http or https")
    if not parts.hostname:
        raise refused("it names no host")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65_535:
        address = parts.netloc.rpartition("@")[2]
        text = address.rpartition("]")[2] if address.startswith("[") else address
        text = text.rpartition(":")[2]
        if text.isascii() and text.isdigit():
            raise refused(f"the port {text} is not from 1 to 65535")
        # Quoted only when short: a key put where the port goes (key:secret) stays out.
        shown = f'"{text}" ' if len(text) <= 5 and text.isascii() and text.isprintable() else ""
        raise refused(f"the port {shown}is not a number")
    if name == "OTEL_EXPORTER_OTLP_ENDPOINT" and ("?" in value or "#" in value):
        # The SDK appends /v1/traces to the whole string: spans went to the path "/" and
        # a key in the query got "/v1/traces" stuck to its end.
        raise refused(
            "the SDK adds /v1/traces after it, behind its query or fragment; put a key in "
            "OTEL_EXPORTER_OTLP_HEADERS, or give the whole URL, /v1/traces included, as "
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
    if name == "OTEL_EXPORTER_OTLP_ENDPOINT" and parts.path.rstrip("/").endswith("/v1/traces"):
        # The whole URL pasted as the base: every batch went to …/v1/traces/v1/traces.
        raise refused(
            "it ends in /v1/traces, which the SDK adds itself; give it without, or give the "
            "whole URL as OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )


# The SDK's own settings, which it reads in each worker (or a Lambda's first sign-up),
# where a malformed one raised: every worker stopped with a traceback after "Listening".
# Checked where the other OTEL_* settings are, each named when it is refused.
_OTEL_COUNTS = (
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT", "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
)  # fmt: skip
_OTEL_BATCH_DEFAULTS = {
    "OTEL_BSP_SCHEDULE_DELAY": 5000, "OTEL_BSP_EXPORT_TIMEOUT": 30000,
    "OTEL_BSP_MAX_QUEUE_SIZE": 2048, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512,
}  # fmt: skip
# Lists of regular expressions, joined with "|" (excluded URLs: when a worker starts;
# captured and sanitized headers: on every sampled request, which then failed).
_OTEL_PATTERN_LISTS = (
    "OTEL_PYTHON_FLASK_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS",
)  # fmt: skip
_OTEL_CREDENTIAL_PROVIDERS = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)
# The exporter's files for TLS: a missing one failed every export without a line.
_OTLP_FILES = ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE")
# What the OTLP/HTTP exporter compresses with; any other it warned about and sent plain.
OTLP_COMPRESSIONS = ("gzip", "deflate", "none")


def check_otel_sdk_settings(env: Mapping[str, str]) -> None:
    """ConfigError, naming the variable, for an SDK setting the SDK would raise on: a
    span limit that is not a whole number of 0 or more, a batch setting under 1 (or a
    batch larger than the queue), a URL or header pattern that is not a regex, a
    credential provider or a propagator no installed package offers, a resource attribute
    that is not key=value; and for one the
    exporter would take with at most a warning: a TLS file that cannot be read, an
    unknown compression, a timeout that is not a number above 0."""
    for name in _OTEL_COUNTS:
        _number(env, name, 0, minimum=0, kind=int)
    batch = {
        name: _number(env, name, default, minimum=1, kind=int)
        for name, default in _OTEL_BATCH_DEFAULTS.items()
    }
    if batch["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] > batch["OTEL_BSP_MAX_QUEUE_SIZE"]:
        raise ConfigError(
            f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE ({batch['OTEL_BSP_MAX_EXPORT_BATCH_SIZE']}) must "
            f"not be larger than OTEL_BSP_MAX_QUEUE_SIZE ({batch['OTEL_BSP_MAX_QUEUE_SIZE']})"
        )
    # As the exporter reads them: the general one if set, else the traces' one, as given.
    general, traces = _OTEL_CREDENTIAL_PROVIDERS
    name = general if env.get(general) else traces
    wanted = env.get(name)
    if wanted:
        from importlib.metadata import entry_points  # only when one is named

        offered = entry_points(group="opentelemetry_otlp_credential_provider").names
        if wanted not in offered:
            raise ConfigError(
                f"{name} names {wanted!r}, which no installed package provides "
                f"(offered: {', '.join(sorted(offered)) or 'none'})"
            )
    _check_propagators(env.get("OTEL_PROPAGATORS", ""))
    _check_resource_attributes(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    _check_otlp_exporter(env)
    for name in _OTEL_PATTERN_LISTS:
        value = env.get(name, "")
        # Split and joined as the instrumentations do, empty entries kept: ",(?i)x" fails.
        patterns = [p.strip() for p in value.split(",")] if value else []
        try:
            re.compile("|".join(patterns))
        except re.error as exc:
            raise ConfigError(
                f"{name} holds a pattern that is not a regular expression: {exc}"
            ) from None


def _check_resource_attributes(value: str) -> None:
    """Each entry of OTEL_RESOURCE_ATTRIBUTES is key=value: the SDK skips another with a
    warning in each worker's log (its text not shown here: a value may be a secret)."""
    for position, entry in enumerate(value.split(","), start=1):
        if not entry.strip():
            continue
        key, equals, _ = entry.partition("=")
        if not equals or not key.strip():
            raise ConfigError(
                f"OTEL_RESOURCE_ATTRIBUTES: entry {position} is not key=value "
                "(entries are separated by commas)"
            )


def _otlp_setting(env: Mapping[str, str], what: str) -> tuple[str, str]:
    """The exporter's setting `what` and its name, as it reads them: the traces' own if
    set (not blank), else the general one."""
    name = f"OTEL_EXPORTER_OTLP_TRACES_{what}"
    if not env.get(name):
        name = f"OTEL_EXPORTER_OTLP_{what}"
    return name, env.get(name, "")


def _check_otlp_exporter(env: Mapping[str, str]) -> None:
    """The exporter's TLS files, compression and timeout, which it took with at most a
    warning: a CA file that is not there failed every export without a line, an unknown
    compression sent plain, a timeout that is not a number became 10 s."""
    for what in _OTLP_FILES:
        name, value = _otlp_setting(env, what)
        if not value:
            continue
        path = Path(value)
        if not path.exists():
            raise ConfigError(f"{name}: {value} does not exist")
        if not path.is_file():
            raise ConfigError(f"{name}: {value} is not a file")
        try:
            path.open("rb").close()
        except OSError as exc:
            raise ConfigError(f"{name}: {value} cannot be read ({exc.strerror})") from None
    name, value = _otlp_setting(env, "COMPRESSION")
    if value and value.strip().lower() not in OTLP_COMPRESSIONS:
        raise ConfigError(
            f"{name} must be one of {', '.join(OTLP_COMPRESSIONS)}, not {value.strip()!r}"
        )
    name, value = _otlp_setting(env, "TIMEOUT")
    try:
        seconds = float(value) if value else 1.0
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{name} must be a number of seconds above 0, not {value.strip()!r}")


def _check_propagators(configured: str) -> None:
    """OTEL_PROPAGATORS as opentelemetry.propagate reads it when imported (by the
    instrumentations): a name no installed package offers (`xray` without its package)
    raised there, and stopped serve's workers, the CLI's verbs and a Lambda's sign-up."""
    if not configured:
        return
    from importlib.metadata import entry_points  # only when some are named

    offered = entry_points(group="opentelemetry_propagator").names
    for name in (part.strip() for part in configured.split(",")):
        if name.lower() == "none":  # no propagators at all, whatever follows
            return
        if name not in offered:
            raise ConfigError(
                f"OTEL_PROPAGATORS names {name!r}, which no installed package provides "
                f"(offered: {', '.join(sorted(offered)) or 'none'})"
            )


def check_otlp_destination(env: Mapping[str, str]) -> None:
    """ConfigError for the first OTLP endpoint or headers setting the exporter could not
    use, by its name (the API's settings and the sign-up Lambda alike)."""
    for name in OTLP_ENDPOINTS:
        if env.get(name, "").strip():
            check_otlp_endpoint(name, env[name].strip())
    for name in OTLP_HEADERS:
        check_otlp_headers(name, env.get(name, ""))


# A value shorter than this is not looked for on its own (it would cut common words out
# of log lines); in its place (the query, the userinfo) it always is.
SECRET_MIN = 6
# The characters requests leaves as they are when it quotes a URL (requote_uri).
_REQUOTE_SAFE = "!#$%&'()*+,/:;=?@[]~"


# A query parameter's or header's name that says its value is a credential.
_SECRET_NAME = re.compile(r"key|token|secret|auth|pass|team|sig|cred", re.IGNORECASE)
SECRET_LONG = 16  # a value this long is cut whatever its name: an API key, not a word


def _looks_secret(name: str, value: str) -> bool:
    """Whether a value, cut out of every log line wherever it appears, is a credential:
    by its name, its length, or letters mixed with digits. Not a plain word such as a
    dataset's name ("cruddur") or a tenant ("production"): cutting those everywhere
    made log lines lie ("connecting to database *** as ***_api")."""
    if _SECRET_NAME.search(name) or len(value) >= SECRET_LONG:
        return True
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def otlp_secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    """What the log must never show of the OTLP settings: each endpoint's query and
    userinfo (an API key can ride in either), the values in them that look like
    credentials on their own, and the headers' such values (x-honeycomb-team=KEY); each
    as given, decoded, and quoted as requests sends it. Longest first, so a whole query
    goes before a value in it."""
    from urllib.parse import parse_qsl, quote, unquote, urlsplit  # as check_otlp_endpoint

    found: set[str] = set()

    def add(text: str, *, alone: bool = False) -> None:
        """`text` in each form it may be logged in; `alone`: a value on its own, looked
        for only when it is long enough not to be part of many words."""
        for form in (text, unquote(text), quote(text, safe=_REQUOTE_SAFE)):
            if form and (not alone or len(form) >= SECRET_MIN):
                found.add(form)

    def add_value(name: str, value: str) -> None:
        if _looks_secret(name, unquote(value)):
            add(value, alone=True)

    for setting in OTLP_ENDPOINTS:
        value = env.get(setting, "").strip()
        try:
            parts = urlsplit(value)
        except ValueError:
            continue  # refused by check_otlp_endpoint, before anything logs
        userinfo, at, _ = parts.netloc.rpartition("@")
        if at and userinfo:
            add(userinfo)
            user, _, password = userinfo.partition(":")
            add_value("user", user)
            add(password, alone=True)
        for text in (parts.query, parts.fragment):
            if text:
                add(text)
                for pair in text.split("&"):
                    key, _, pair_value = pair.partition("=")
                    if _looks_secret(key, unquote(pair_value)):
                        add(pair, alone=True)
                        add(pair_value, alone=True)
        for key, decoded in parse_qsl(parts.query, keep_blank_values=True):
            add_value(key, decoded)
    for setting in OTLP_HEADERS:
        for entry in env.get(setting, "").split(","):
            key, _, header_value = entry.partition("=")
            add_value(key, header_value.strip())
    return tuple(sorted(found, key=lambda text: (-len(text), text)))


@dataclass(frozen=True, repr=False)
class TelemetrySettings(ReprWithoutSecrets):
    """Traces (the standard OTEL_* variables), request logs and Prometheus metrics.

    Traces are on only when an OTLP endpoint is set; the SDK reads the other OTEL_*
    variables itself (service name, headers, sampler, timeouts, batching).
    """

    _ENDPOINT_FIELDS = frozenset({"traces_endpoint"})

    traces_endpoint: str | None = None  # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
    log_level: str = "info"
    log_format: str = "json"  # one JSON object a line on stdout; "text" for people
    log_format_given: bool = False  # CRUDDUR_LOG_FORMAT was set (--dev keeps it then)
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    sampler: str = "parentbased_always_on"  # OTEL_TRACES_SAMPLER
    sampler_ratio: float = 1.0  # OTEL_TRACES_SAMPLER_ARG, for the *traceidratio samplers
    # What the log must never show (otlp_secrets): each handler cruddur installs cuts it.
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def traces(self) -> bool:
        return self.traces_endpoint is not None

    @property
    def metrics(self) -> bool:
        return self.metrics_port is not None

    @classmethod
    def from_env(cls, env: dict[str, str]) -> TelemetrySettings:
        endpoint = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
            or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
            or None
        )
        exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        if traces_disabled(env):
            endpoint = None
        if exporters not in ("", "otlp", "none"):
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER must be otlp or none, not {exporters!r} "
                "(traces go out over OTLP/HTTP; a collector forwards them elsewhere)"
            )
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
        )
        if endpoint and protocol not in ("", "http/protobuf"):
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf, not {protocol!r}: "
                "Cruddur sends traces over OTLP/HTTP (port 4318 on a collector)"
            )
        if endpoint:
            check_otlp_destination(env)
            check_otel_sdk_settings(env)
        # Read only with tracing on: off, a sampler setting stopped every command.
        sampler, ratio = traces_sampler(env) if endpoint else (cls.sampler, cls.sampler_ratio)
        level = env.get("CRUDDUR_LOG_LEVEL", "").strip().lower() or cls.log_level
        if level not in LOG_LEVELS:
            raise ConfigError(f"CRUDDUR_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        log_format = env.get("CRUDDUR_LOG_FORMAT", "").strip().lower()
        if log_format and log_format not in LOG_FORMATS:
            raise ConfigError(f"CRUDDUR_LOG_FORMAT must be json or text, not {log_format!r}")
        port = env.get("CRUDDUR_METRICS_PORT", "").strip()
        return cls(
            traces_endpoint=endpoint,
            log_level=level,
            log_format=log_format or cls.log_format,
            log_format_given=bool(log_format),
            metrics_port=(_port(env, "CRUDDUR_METRICS_PORT", 0) if port else None),
            metrics_host=env.get("CRUDDUR_METRICS_HOST", "").strip() or cls.metrics_host,
            sampler=sampler,
            sampler_ratio=ratio,
            secrets=otlp_secrets(env) if endpoint else (),
        )


def traces_disabled(env: Mapping[str, str]) -> bool:
    """OTEL_SDK_DISABLED (any true word) or OTEL_TRACES_EXPORTER=none: no traces."""
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return _truthy(env.get("OTEL_SDK_DISABLED", "")) or exporters == "none"


def traces_sampler(env: Mapping[str, str]) -> tuple[str, float]:
    """OTEL_TRACES_SAMPLER and its _ARG, checked: (name, ratio). The API, the CLI and the
    Lambdas all sample by these (the SDK would read the variable again, as it is)."""
    defaults = TelemetrySettings()
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or defaults.sampler
    if sampler not in SAMPLERS:
        raise ConfigError(
            f"OTEL_TRACES_SAMPLER must be one of {', '.join(SAMPLERS)}, not {sampler!r}"
        )
    ratio = defaults.sampler_ratio
    if sampler.endswith("traceidratio") and env.get("OTEL_TRACES_SAMPLER_ARG", "").strip():
        ratio = _number(env, "OTEL_TRACES_SAMPLER_ARG", 1.0, minimum=0.0, kind=float)
        if ratio > 1:
            raise ConfigError("OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1")
    return sampler, ratio


# What the page's Content-Security-Policy may quote as an origin: an http(s) URL without
# the characters that would end a policy directive or its HTML attribute.
_WEB_URL = re.compile(r"https?://[^\s\"'<>;,\\]+")


def _web_url(env: Mapping[str, str], name: str) -> str:
    url = env.get(name, "").strip().rstrip("/")
    if url and not _WEB_URL.fullmatch(url):
        raise ConfigError(
            f"{name} must be an http:// or https:// URL (no spaces, quotes, "
            f"commas, semicolons or angle brackets), not {url!r}"
        )
    if url and (problem := _web_url_problem(url)):
        # Not quoted: a user part may hold a password.
        raise ConfigError(f"{name} must be an http:// or https:// URL: {problem}")
    return url


def _web_url_problem(url: str) -> str | None:
    """What the page could not use in `url` (its origin goes in the CSP, its base before
    the API's paths): an unclosed IPv6 bracket made every worker fail as it started."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is no number from 0 to 65535
    except ValueError:
        return "its host or port cannot be read"
    if not parts.hostname:
        return "it names no host"
    if "[" in parts.netloc.rpartition("@")[2]:  # IPv6 or IPvFuture ([v1.x]), unbracketed
        return (
            "an IP address in brackets cannot be named in the page's "
            "Content-Security-Policy: give a host name"
        )
    if problem := _web_host_problem(parts.hostname):
        return problem
    if port == 0:
        return "its port is 0"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "a query or # has no place in it"
    if parts.username is not None or parts.password is not None:
        return "it has a user part"
    return None


# A host as a Content-Security-Policy names it (letters, digits and hyphens between dots)
# and as fetch() reaches it: a name in another script goes there in its ASCII form, and
# one the CSP cannot hold voided the policy's connect-src, so the page reached nothing.
_WEB_HOST = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*\.?", re.IGNORECASE)


def _web_host_problem(host: str) -> str | None:
    # (A bracketed address is refused before: no CSP source can be one; Chromium dropped
    # it, and blocked the page's requests to it.)
    if "" in host.removesuffix(".").split("."):
        return "its host has an empty label (two dots in a row, or a leading dot)"
    if _WEB_HOST.fullmatch(host):
        return None
    if not host.isascii():
        import idna  # UTS #46, as browsers map a name (Python's "idna" codec made faß fass)

        try:
            ascii_form = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            return "its host has characters outside ASCII: write it in its ASCII (xn--) form"
        return f"its host has characters outside ASCII: write it as {ascii_form}"
    return "its host may have only letters, digits, hyphens and dots (no * or _)"


@dataclass(frozen=True)
class WebSettings:
    """What the browser front end is told: where the API is, and where Cognito is."""

    api_url: str = ""  # empty: the API is on the page's own origin
    cognito_url: str | None = None  # Cognito's API endpoint; None without a user pool

    @classmethod
    def from_env(cls, env: dict[str, str], auth: AuthSettings) -> WebSettings:
        api_url = _web_url(env, "CRUDDUR_API_URL")
        # Quoted in the CSP's connect-src like the API's: checked alike, and always (a bad
        # one set for later stops serve now, not once a user pool is set).
        given = _web_url(env, "CRUDDUR_COGNITO_URL")
        cognito_url = None
        if not auth.dev:
            # The issuer is https://cognito-idp.<region>.amazonaws.com/<pool id>.
            cognito_url = given or auth.issuer.rsplit("/", 1)[0]
        return cls(api_url=api_url, cognito_url=cognito_url)


# A day: a write's X-Read-After counts about this long, and its signed expiry (a Unix
# time) must keep to 12 digits (api/read_after.py); 1e12 made every one refused.
MAX_REPLICA_LAG = 86_400.0
# The watcher looks once a second, and a look vouches for the replica only while its lag
# plus the time since stays within the limit: under a second it was hardly ever used,
# and at 0 never, though accepted.
MIN_REPLICA_LAG = 1.0


@dataclass(frozen=True, repr=False)
class ReplicaSettings(ReprWithoutSecrets):
    """Where reads may go besides the primary (README, "Scaling out")."""

    _URL_FIELDS = frozenset({"reader_url"})

    reader_url: str | None = None  # READER_CONNECTION_URL: a replica or a reader endpoint
    max_lag: float = 5.0  # seconds behind the primary before reads skip the replica
    check_interval: float = 1.0  # seconds between a worker's looks at the replica
    # CRUDDUR_POOLER=transaction: a transaction pooler (PgBouncer, RDS Proxy) is in front.
    # An RDS Proxy endpoint says so by its name alone (`behind_pooler`).
    pooler: str | None = None
    # CRUDDUR_READ_AFTER_KEY: what X-Read-After values are signed with (api/read_after.py);
    # the same on every instance behind one load balancer. Unset: `serve` makes one for
    # its workers.
    read_after_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ReplicaSettings:
        defaults = cls()
        key = env.get("CRUDDUR_READ_AFTER_KEY", "").strip() or None
        if key is not None and len(key) < 32:
            raise ConfigError(
                "CRUDDUR_READ_AFTER_KEY must be 32 characters or more (`openssl rand -hex 32`)"
            )
        return cls(
            reader_url=env.get("READER_CONNECTION_URL", "").strip() or None,
            max_lag=_number(
                env,
                "CRUDDUR_REPLICA_MAX_LAG",
                defaults.max_lag,
                minimum=MIN_REPLICA_LAG,
                maximum=MAX_REPLICA_LAG,
                kind=float,
            ),
            pooler=_pooler(env),
            read_after_key=key,
        )

    def behind_pooler(self, url: str) -> bool:
        """Does `url` reach PostgreSQL through a transaction pooler?"""
        return _behind_pooler(self.pooler, url)


def _pooler(env: Mapping[str, str]) -> str | None:
    """CRUDDUR_POOLER: "transaction", or None (unset, or "none")."""
    pooler = env.get("CRUDDUR_POOLER", "").strip().lower() or None
    if pooler not in (None, "none", "transaction"):
        raise ConfigError(f"CRUDDUR_POOLER must be transaction or none, not {pooler!r}")
    return None if pooler == "none" else pooler


def _behind_pooler(pooler: str | None, url: str) -> bool:
    from cruddur.urls import looks_like_rds_proxy  # urls imports nothing of ours

    return pooler == "transaction" or looks_like_rds_proxy(url)


# How long ago a crud may have expired for the purge to wait (`db purge-expired --grace`,
# the purge Lambda's CRUDDUR_PURGE_GRACE_HOURS): ten years, far past any crud's life;
# past it, timedelta and PostgreSQL's timestamps run out.
PURGE_GRACE_MAX = timedelta(days=3650)
# The most rows one purge transaction may delete (`--batch-size`, CRUDDUR_PURGE_BATCH_SIZE):
# the locks a batch holds, and PostgreSQL's LIMIT (a bigint), bound it.
PURGE_BATCH_MAX = 100_000
PURGE_BATCH_DEFAULT = 5_000  # `--batch-size` when not given
# After each batch the purge rests this many times as long as the batch took
# (`--nice-ratio`, CRUDDUR_PURGE_NICE_RATIO; gh-ost's name for the same idea): 5 leaves
# the purge a sixth of its time on the database (the feed's p99 during a purge of
# 500,000 rows: 3.89x with 0, 2.02x with 1, 1.55x, 2.04x and 1.68x with 3, 1.24x with
# 5; README "Measured"). A nightly purge can take its time: 138 s for those rows.
PURGE_NICE_RATIO_DEFAULT = 5.0
PURGE_NICE_RATIO_MAX = 100.0


# The longest a caller may be told to wait for a connection: an hour is already more than
# anyone would; 1e10 s overflowed the pool's thread timeout (an "unexpected OverflowError"
# from every command).
WAIT_MAX_SECONDS = 3600


def _connect_timeout(env: Mapping[str, str], default: int) -> int:
    """CRUDDUR_CONNECT_TIMEOUT: the API's and the CLI's, and the Lambdas', seconds."""
    return _number(
        env, "CRUDDUR_CONNECT_TIMEOUT", default, minimum=1, maximum=WAIT_MAX_SECONDS, kind=int
    )


@dataclass(frozen=True)
class LambdaSettings:
    """What a Lambda handler reads besides its connection (cruddur.lambdas); each handler
    passes its own defaults. A malformed value fails the invocation, and its log says
    which setting, rather than running with a limit nobody chose."""

    connect_timeout: int = 5  # CRUDDUR_CONNECT_TIMEOUT, seconds
    statement_timeout_ms: int = 1000  # CRUDDUR_STATEMENT_TIMEOUT, milliseconds
    purge_grace_hours: int = 24  # CRUDDUR_PURGE_GRACE_HOURS
    purge_batch_size: int = PURGE_BATCH_DEFAULT  # CRUDDUR_PURGE_BATCH_SIZE, rows a transaction
    purge_nice_ratio: float = PURGE_NICE_RATIO_DEFAULT  # CRUDDUR_PURGE_NICE_RATIO
    pooler: str | None = None  # CRUDDUR_POOLER, as the API reads it (ReplicaSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str], defaults: LambdaSettings) -> LambdaSettings:
        return cls(
            connect_timeout=_connect_timeout(env, defaults.connect_timeout),
            # At most PostgreSQL's limit: more reached the server as a failed connect.
            statement_timeout_ms=_number(
                env,
                "CRUDDUR_STATEMENT_TIMEOUT",
                defaults.statement_timeout_ms,
                minimum=1,
                maximum=_DURATION_MAX_MS,
                kind=int,
            ),
            purge_grace_hours=_number(
                env,
                "CRUDDUR_PURGE_GRACE_HOURS",
                defaults.purge_grace_hours,
                minimum=1,
                maximum=PURGE_GRACE_MAX // timedelta(hours=1),
                kind=int,
            ),
            purge_batch_size=_number(
                env,
                "CRUDDUR_PURGE_BATCH_SIZE",
                defaults.purge_batch_size,
                minimum=1,
                maximum=PURGE_BATCH_MAX,
                kind=int,
            ),
            purge_nice_ratio=_number(
                env,
                "CRUDDUR_PURGE_NICE_RATIO",
                defaults.purge_nice_ratio,
                minimum=0.0,
                maximum=PURGE_NICE_RATIO_MAX,
                kind=float,
            ),
            pooler=_pooler(env),
        )

    def behind_pooler(self, url: str) -> bool:
        """Does `url` reach PostgreSQL through a transaction pooler (CRUDDUR_POOLER, or an
        RDS Proxy endpoint)?"""
        return _behind_pooler(self.pooler, url)


class _ParsedOnRead:
    """A Settings field that may be given as a function, called on the field's first
    read, so a setting is checked by the command that uses it: a malformed
    CRUDDUR_WORKERS stops `cruddur serve`, not `cruddur db status`, which never serves.
    A descriptor-typed dataclass field, so `replace()` and plain values still work."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = f"_{name}"

    def __get__(self, settings: object, owner: type | None = None) -> Any:
        if settings is None:
            raise AttributeError(self.key)  # the field has no default
        value = settings.__dict__[self.key]
        if callable(value):
            value = settings.__dict__[self.key] = value()
        return value

    def __set__(self, settings: object, value: Any) -> None:
        settings.__dict__[self.key] = value  # by __init__ alone: Settings is frozen


@dataclass(frozen=True, repr=False)
class Settings(ReprWithoutSecrets):
    _URL_FIELDS = frozenset(
        {
            "connection_url",
            "prod_connection_url",
            "migration_connection_url",
            "prod_migration_connection_url",
            "api_connection_url",
        }
    )

    connection_url: str | None
    prod_connection_url: str | None
    pool: PoolSettings
    home: Path  # project-local state: the embedded server's data, logs, password
    pg_bin: Path | None  # where initdb/pg_ctl/postgres/psql live, when set by hand
    auth: AuthSettings
    # Only `cruddur serve`, its workers and `cruddur web build` read these: parsed on
    # first read (_ParsedOnRead), so a malformed one never stops a `db` command.
    web: WebSettings = _ParsedOnRead()  # type: ignore[assignment]
    serve: ServeSettings = _ParsedOnRead()  # type: ignore[assignment]
    # Direct URLs for migrations when the usual ones go through a pooler or RDS Proxy.
    migration_connection_url: str | None = None
    prod_migration_connection_url: str | None = None
    migration: MigrationSettings = MigrationSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    replica: ReplicaSettings = ReplicaSettings()
    # The API's own role (`cruddur db roles`): the rows and columns the API uses, no more.
    # Unset: the embedded server's API role, or else CONNECTION_URL's user.
    api_connection_url: str | None = None
    # CRUDDUR_API_LOCK_TIMEOUT, CRUDDUR_API_STATEMENT_TIMEOUT: the API role's bounds.
    api_timeouts: ApiTimeouts = ApiTimeouts()

    def but(self, **changes: Any) -> Settings:
        """A copy with `changes`, like dataclasses.replace, except that a field not yet
        parsed (_ParsedOnRead) stays so: replace() reads every field, and a malformed
        PORT would then stop `cruddur web build`, which never serves."""
        unread = {
            name: self.__dict__[f"_{name}"]
            for name, field in vars(type(self)).items()
            if isinstance(field, _ParsedOnRead) and name not in changes
        }
        return replace(self, **unread, **changes)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        defaults = PoolSettings()
        pool = PoolSettings(
            min_size=_number(
                env,
                "CRUDDUR_POOL_MIN_SIZE",
                defaults.min_size,
                minimum=0,
                maximum=MAX_POOL_SIZE,
                kind=int,
            ),
            max_size=_number(
                env,
                "CRUDDUR_POOL_MAX_SIZE",
                defaults.max_size,
                minimum=1,
                maximum=MAX_POOL_SIZE,
                kind=int,
            ),
            timeout=_number(
                env,
                "CRUDDUR_POOL_TIMEOUT",
                defaults.timeout,
                minimum=0.1,
                maximum=WAIT_MAX_SECONDS,
                kind=float,
            ),
            connect_timeout=_connect_timeout(env, defaults.connect_timeout),
        )
        if pool.min_size > pool.max_size:
            raise ConfigError(
                f"CRUDDUR_POOL_MIN_SIZE ({pool.min_size}) is larger than "
                f"CRUDDUR_POOL_MAX_SIZE ({pool.max_size})"
            )
        home = home_from_env(env)
        pg_bin = env.get("CRUDDUR_PG_BIN", "").strip()
        auth = AuthSettings.from_env(env, home)
        return cls(
            connection_url=env.get("CONNECTION_URL", "").strip() or None,
            prod_connection_url=env.get("PROD_CONNECTION_URL", "").strip() or None,
            pool=pool,
            home=home,
            pg_bin=Path(pg_bin) if pg_bin else None,
            auth=auth,
            serve=functools.partial(ServeSettings.from_env, env),
            web=functools.partial(WebSettings.from_env, env, auth),
            migration_connection_url=env.get("MIGRATION_CONNECTION_URL", "").strip() or None,
            prod_migration_connection_url=(
                env.get("PROD_MIGRATION_CONNECTION_URL", "").strip() or None
            ),
            migration=MigrationSettings.from_env(env, pool.connect_timeout),
            telemetry=TelemetrySettings.from_env(env),
            replica=ReplicaSettings.from_env(env),
            api_connection_url=env.get("CRUDDUR_API_CONNECTION_URL", "").strip() or None,
            api_timeouts=ApiTimeouts.from_env(env),
        )
