"""Connections to Amazon RDS prove who answers: `sslmode=verify-full` against the RDS CA bundle.

Without an `sslmode`, libpq uses `prefer`: it encrypts when the server offers TLS but
accepts any certificate, so whoever sits on the path (a hostile Wi-Fi, a poisoned DNS
answer) can present their own and read the password and every row. For an RDS endpoint
(`….rds.amazonaws.com`, `….rds.amazonaws.com.cn`) every connection Cruddur makes, from
the API, the CLI and the Lambda, therefore asks for `verify-full`: the certificate must
chain to a CA in the RDS bundle and name the host it was asked for. A URL that asks for
less is refused, not quietly upgraded; a URL's own `sslrootcert` is kept.

Standard library, psycopg and cruddur.urls only: the Lambda imports this module.
"""

from __future__ import annotations

import errno
import os
import ssl
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from psycopg.conninfo import make_conninfo

from cruddur.config import ConfigError
from cruddur.groups import others_in_group
from cruddur.path_walk import link_others_own, walk
from cruddur.urls import looks_like_rds, parse, rds_hosts, redact

VERIFY_FULL = "verify-full"
# A copy of the RDS CA bundle to use instead of the one Cruddur fetches and keeps.
BUNDLE_SETTING = "CRUDDUR_RDS_CA_BUNDLE"
# Where `cruddur lambda package` puts the bundle inside the zip (beside the package).
PACKAGED_BUNDLE = Path(__file__).resolve().parent / "rds-ca-bundle.pem"
# The roots an RDS Proxy endpoint's certificate chains to (in the package and the zip).
AMAZON_ROOTS = Path(__file__).resolve().parent / "amazon-trust-roots.pem"
# A file of roots to trust for RDS Proxy endpoints instead (a test CA, a newer copy).
PROXY_ROOTS_SETTING = "CRUDDUR_RDS_PROXY_CA_BUNDLE"


def secured(conninfo: str, bundle: Callable[[], Path], env: Mapping[str, str] = os.environ) -> str:
    """`conninfo` with sslmode=verify-full and the roots its RDS endpoint's certificate
    chains to: the RDS CA bundle for a DB instance (`bundle()` gives its path, fetching
    it if need be), Amazon's roots for an RDS Proxy (`proxy_roots(env)`). Any other
    server's conninfo as it is."""
    if not looks_like_rds(conninfo):
        return conninfo
    params = parse(conninfo)
    mode = params.get("sslmode", "").strip()
    if mode and mode != VERIFY_FULL:
        raise ConfigError(
            f"{redact(conninfo)} asks for sslmode={mode}; Cruddur reaches an RDS endpoint "
            f"only with sslmode={VERIFY_FULL} (drop sslmode from the URL)"
        )
    root = params.get("sslrootcert", "").strip() or str(_roots_for(conninfo, bundle, env))
    return make_conninfo(conninfo, sslmode=VERIFY_FULL, sslrootcert=root)


def _roots_for(conninfo: str, bundle: Callable[[], Path], env: Mapping[str, str]) -> Path:
    """The RDS CA bundle, or Amazon's roots when every RDS host in it is a proxy."""
    proxies = [".proxy-" in host for host in rds_hosts(conninfo)]
    if not any(proxies):
        return bundle()
    if all(proxies):
        return proxy_roots(env)
    # libpq takes one sslrootcert for every host of a multi-host URL.
    raise ConfigError(
        f"{redact(conninfo)} names both an RDS Proxy endpoint and a DB instance, whose "
        "certificates chain to different roots (Amazon's, and the RDS CA bundle): give "
        "it an sslrootcert holding both, or connect to one of them"
    )


def proxy_roots(env: Mapping[str, str] = os.environ) -> Path:
    """The roots trusted for RDS Proxy endpoints: CRUDDUR_RDS_PROXY_CA_BUNDLE's file,
    checked as the RDS bundle's is (it decides which servers receive the password), else
    Amazon Root CA 1 to 4 as shipped in the package (and the Lambda's zip)."""
    given = env.get(PROXY_ROOTS_SETTING, "").strip()
    if not given:
        if not AMAZON_ROOTS.is_file():
            raise ConfigError(f"no roots for RDS Proxy at {AMAZON_ROOTS}: reinstall Cruddur")
        return AMAZON_ROOTS
    path = Path(given)
    problem = _roots_file_problem(path)
    if problem:
        raise ConfigError(f"{PROXY_ROOTS_SETTING} ({path}) {problem}")
    return path


def _roots_file_problem(path: Path) -> str | None:
    """Why a file given as roots to trust is not one, or None: read_trusted's checks, and
    CA certificates in what was read (the standard library's check: the Lambda has no
    `cryptography`)."""
    try:
        pem = read_trusted(path, MAX_TRUSTED_BYTES)
    except UntrustedFile as exc:
        if exc.kind == "unreadable":
            return f"cannot be read: {exc}"
        if exc.kind == "folder":
            return f"{exc} Move it to a folder of your own"
        return f"{exc} Fix its owner or mode" if exc.kind == "not owned" else str(exc)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=pem.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError):
        return "holds no PEM certificates"
    if not context.get_ca_certs():
        return "holds no certificate authority"
    return None


MAX_TRUSTED_BYTES = 1_000_000  # a 2024 copy of the RDS bundle is 174 kB: room to grow


class UntrustedFile(ValueError):
    """A file of CAs not to trust; `kind`: "unreadable", "not a file", "not owned" or
    "folder" (one above it is another user's, or anyone's to write)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def read_trusted(path: Path, limit: int, *, link: bool = True) -> bytes:
    """Up to `limit` bytes of a file of CAs, if it is a regular file this user or root
    owns and no one else may change (one copied into an image runs as another user, a
    system's is root's: root is trusted as it is with .env files). It decides which
    servers receive the password. Raises UntrustedFile, its message a phrase to follow
    the file's name (for "unreadable", the system's reason alone).

    link: whether `path` itself may be a link (this user's or root's, as a link on the
    way may be: Debian's /etc/ssl/certs/*.pem are root's links); a file Cruddur keeps
    itself is never one."""
    # O_NONBLOCK: a pipe at that path would otherwise hold the command until written.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if link else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not link and os.path.islink(path):
            raise UntrustedFile(
                "unreadable",
                "it is a link, not the file kept there: remove it (`cruddur rds ca-bundle "
                "--refresh` fetches the file again)",
            ) from None
        raise UntrustedFile("unreadable", exc.strerror or str(exc)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # a folder ended in "unexpected IsADirectoryError"
        os.close(fd)
        raise UntrustedFile(
            "not a file",
            "is not a file (a folder, a pipe or a device): give the path of a PEM file",
        )
    with os.fdopen(fd, "rb") as handle:
        if info.st_uid not in (os.geteuid(), 0) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UntrustedFile(
                "not owned",
                "is neither this user's own nor root's, or others may write it: a planted "
                "file would let another server take the password.",
            )
        on_the_way, links = walk(path)
        if (folder := _folder_others_can_change(path, on_the_way)) is not None:
            # libpq reads the file by its path at each new connection, long after this:
            # whoever may rename files in a folder above it can swap in their own CA.
            raise UntrustedFile(
                "folder",
                f"is in {folder}, a folder another user owns, or anyone or a group of others "
                "may write: a file "
                "swapped in there would let another server take the password.",
            )
        if (link := link_others_own(links)) is not None:
            # The same, by a link of theirs on the way (a sticky /tmp keeps it theirs).
            raise UntrustedFile(
                "folder",
                f"is reached through {link}, a link another user owns: pointed elsewhere, "
                "it would let another server take the password.",
            )
        return handle.read(limit)


def _folder_others_can_change(path: Path, on_the_way: list[Path]) -> Path | None:
    """The first folder above `path` (as written and as resolved) or `on_the_way` to it
    (walk's: each folder holding a link, whose writer can swap the link) that another
    user than this one or root owns, or that anyone may write without the sticky bit, or
    whose group may write it and has members besides this user and root (groups.py's
    others_in_group); None when there is none. A folder its group of this user's alone,
    root's group or a group with no members may write is taken: a checkout cloned under
    umask 002 (a group of the user's own, as many systems give each user), Debian's
    /usr/local (staff, 2775). (A root-owned folder of a shared group, 0775, let its
    members swap the file.)"""
    written = Path(os.path.abspath(path))
    for folder in dict.fromkeys(
        [*written.parents, *Path(os.path.realpath(written)).parents, *on_the_way]
    ):
        info = os.stat(folder)
        sticky = info.st_mode & stat.S_ISVTX
        if info.st_uid not in (os.geteuid(), 0) or (info.st_mode & stat.S_IWOTH and not sticky):
            return folder
        shared = info.st_mode & stat.S_IWGRP and not sticky
        if shared and others_in_group(info.st_gid, os.geteuid()):
            return folder
    return None


def kept_bundle(home: Path) -> Path:
    """The bundle Cruddur keeps under `home` (CRUDDUR_RDS_CA_BUNDLE instead, when set),
    fetched on first use. Not for the Lambda: it imports cryptography, only then."""
    from cruddur.aws.ca_bundle import bundle_path

    return bundle_path(home, os.environ)


def lambda_bundle(env: Mapping[str, str] = os.environ) -> Path:
    """The bundle the Lambda trusts: CRUDDUR_RDS_CA_BUNDLE, else the one in its zip."""
    given = env.get(BUNDLE_SETTING, "").strip()
    path = Path(given) if given else PACKAGED_BUNDLE
    if not path.is_file():
        raise RuntimeError(
            f"no RDS CA bundle at {path}: build the zip with `cruddur lambda package`, "
            f"which puts it in, or set {BUNDLE_SETTING}"
        )
    return path
