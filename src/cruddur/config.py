"""Settings from the environment, read in one place.

Every knob Cruddur has is an environment variable listed here (and in `.env.example`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


N = TypeVar("N", int, float)


def _number(env: dict[str, str], name: str, default: N, *, minimum: N, kind: type[N]) -> N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name} must be {noun}, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {raw}")
    return value


def debug_enabled() -> bool:
    """CRUDDUR_DEBUG=1: show tracebacks of unexpected errors (read alone: it must work
    even when the other settings are broken)."""
    return os.environ.get("CRUDDUR_DEBUG", "").strip() not in ("", "0")


def _default_home() -> Path:
    # In a checkout (editable install) the state folder sits beside pyproject.toml;
    # an installed package keeps it in the user's home instead.
    project_root = Path(__file__).resolve().parents[2]
    if (project_root / "pyproject.toml").is_file():
        return project_root / ".cruddur"
    return Path.home() / ".cruddur"


@dataclass(frozen=True)
class PoolSettings:
    min_size: int = 1
    max_size: int = 10
    timeout: float = 10.0  # seconds a caller waits for a free connection
    connect_timeout: int = 5  # seconds libpq waits for the server


DEV_ISSUER = "cruddur-dev"
DEV_CLIENT_ID = "cruddur-dev"


@dataclass(frozen=True)
class AuthSettings:
    """Whose tokens the API accepts: a Cognito user pool's, or the local dev key pair's."""

    issuer: str  # the `iss` every token must carry
    client_id: str  # the app client the token must be for (`client_id` claim)
    jwks_url: str  # where the public keys are (https://, http:// or file://)
    dev: bool  # True: the local key pair under CRUDDUR_HOME/auth, for development
    # Why these settings cannot check tokens; only the API minds (see `checked`), so
    # other commands that read AWS_COGNITO_USER_POOL_ID work with a partial setup.
    problem: str | None = None

    def checked(self) -> AuthSettings:
        """Self, or ConfigError when the settings cannot check tokens."""
        if self.problem:
            raise ConfigError(self.problem)
        return self

    @classmethod
    def from_env(cls, env: dict[str, str], home: Path) -> AuthSettings:
        pool_id = env.get("AWS_COGNITO_USER_POOL_ID", "").strip()
        client_id = env.get("AWS_COGNITO_USER_POOL_CLIENT_ID", "").strip()
        jwks_url = env.get("CRUDDUR_JWKS_URL", "").strip()
        if not pool_id:
            return cls(
                issuer=DEV_ISSUER,
                client_id=DEV_CLIENT_ID,
                jwks_url=jwks_url or (home / "auth" / "jwks.json").as_uri(),
                dev=True,
            )
        region, sep, _ = pool_id.partition("_")
        problem = None
        if not sep or not region:
            problem = (
                f"AWS_COGNITO_USER_POOL_ID must look like <region>_<id> "
                f"(e.g. ca-central-1_AbCd1234), not {pool_id!r}"
            )
        elif not client_id:
            problem = (
                "AWS_COGNITO_USER_POOL_CLIENT_ID is not set: tokens are checked against the "
                "user pool's app client id"
            )
        issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"
        return cls(
            issuer=issuer,
            client_id=client_id,
            jwks_url=jwks_url or f"{issuer}/.well-known/jwks.json",
            dev=False,
            problem=problem,
        )


SERVERS = ("gunicorn", "granian")


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 4567  # the original Cruddur backend's port
    workers: int = 2  # processes; one per core
    threads: int = 4  # per worker; requests wait on the database, not the CPU
    server: str = "granian"  # measured faster on the feed: README "Measured"
    cors_origins: tuple[str, ...] = ("http://localhost:3000",)

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ServeSettings:
        defaults = cls()
        server = env.get("CRUDDUR_SERVER", "").strip() or defaults.server
        if server not in SERVERS:
            raise ConfigError(f"CRUDDUR_SERVER must be one of {', '.join(SERVERS)}, not {server!r}")

        # The original's names: the front end's URL (by default the local one), and the
        # backend's own (for its docs).
        def listed(name: str) -> list[str]:
            return [o.strip().rstrip("/") for o in env.get(name, "").split(",") if o.strip()]

        origins = (listed("FRONTEND_URL") or list(defaults.cors_origins)) + listed("BACKEND_URL")
        return cls(
            host=env.get("CRUDDUR_HOST", "").strip() or defaults.host,
            port=_number(env, "PORT", defaults.port, minimum=1, kind=int),
            workers=_number(env, "CRUDDUR_WORKERS", defaults.workers, minimum=1, kind=int),
            threads=_number(env, "CRUDDUR_THREADS", defaults.threads, minimum=1, kind=int),
            server=server,
            cors_origins=tuple(dict.fromkeys(origins)),
        )


@dataclass(frozen=True)
class Settings:
    connection_url: str | None
    prod_connection_url: str | None
    pool: PoolSettings
    home: Path  # project-local state: the embedded server's data, logs, password
    pg_bin: Path | None  # where initdb/pg_ctl/postgres/psql live, when set by hand
    auth: AuthSettings
    serve: ServeSettings

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        defaults = PoolSettings()
        pool = PoolSettings(
            min_size=_number(env, "CRUDDUR_POOL_MIN_SIZE", defaults.min_size, minimum=0, kind=int),
            max_size=_number(env, "CRUDDUR_POOL_MAX_SIZE", defaults.max_size, minimum=1, kind=int),
            timeout=_number(env, "CRUDDUR_POOL_TIMEOUT", defaults.timeout, minimum=0.1, kind=float),
            connect_timeout=_number(
                env, "CRUDDUR_CONNECT_TIMEOUT", defaults.connect_timeout, minimum=1, kind=int
            ),
        )
        if pool.min_size > pool.max_size:
            raise ConfigError(
                f"CRUDDUR_POOL_MIN_SIZE ({pool.min_size}) is larger than "
                f"CRUDDUR_POOL_MAX_SIZE ({pool.max_size})"
            )
        home_setting = env.get("CRUDDUR_HOME", "").strip()
        home = Path(home_setting).resolve() if home_setting else _default_home()
        pg_bin = env.get("CRUDDUR_PG_BIN", "").strip()
        return cls(
            connection_url=env.get("CONNECTION_URL", "").strip() or None,
            prod_connection_url=env.get("PROD_CONNECTION_URL", "").strip() or None,
            pool=pool,
            home=home,
            pg_bin=Path(pg_bin) if pg_bin else None,
            auth=AuthSettings.from_env(env, home),
            serve=ServeSettings.from_env(env),
        )
