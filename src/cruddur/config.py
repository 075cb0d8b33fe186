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


@dataclass(frozen=True)
class Settings:
    connection_url: str | None
    prod_connection_url: str | None
    pool: PoolSettings
    home: Path  # project-local state: the embedded server's data, logs, password
    pg_bin: Path | None  # where initdb/pg_ctl/postgres/psql live, when set by hand

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
        home = env.get("CRUDDUR_HOME", "").strip()
        pg_bin = env.get("CRUDDUR_PG_BIN", "").strip()
        return cls(
            connection_url=env.get("CONNECTION_URL", "").strip() or None,
            prod_connection_url=env.get("PROD_CONNECTION_URL", "").strip() or None,
            pool=pool,
            home=Path(home).resolve() if home else _default_home(),
            pg_bin=Path(pg_bin) if pg_bin else None,
        )
