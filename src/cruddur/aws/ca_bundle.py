"""The RDS CA bundle: AWS's `global-bundle.pem`, fetched on first use, checked, and kept.

No maintained package on PyPI or Debian carries a current copy, so Cruddur fetches it
from AWS's RDS trust store (GLOBAL_BUNDLE_URL, over HTTPS verified with the system's
CAs) the first time a connection to RDS needs it, and keeps it in
CRUDDUR_HOME/tls/rds-global-bundle.pem. `cruddur rds ca-bundle --refresh` fetches it
again (AWS adds a CA now and then). CRUDDUR_RDS_CA_BUNDLE names a copy of your own
instead (a machine without internet access, a test CA).

A fetched bundle is checked before it is kept: PEM certificates only, each a CA of
"Amazon RDS", at least one of them valid today, under a megabyte. The kept file is
trusted only while it is owned by this user and writable by no one else: it decides
which servers may receive the database password.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from cruddur.config import ConfigError
from cruddur.rds_tls import BUNDLE_SETTING, MAX_TRUSTED_BYTES, UntrustedFile, read_trusted
from cruddur.safe_paths import private_folder

GLOBAL_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
MAX_BYTES = MAX_TRUSTED_BYTES
FETCH_TIMEOUT = 10.0  # seconds
RDS_UNIT = "Amazon RDS"  # the OU of every CA in AWS's bundle


class BundleError(ConfigError):
    """The bundle cannot be had or is not one to trust; the message says why and what to do."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    source: str  # the URL it was fetched from, or the setting that named it
    certificates: int
    sha256: str
    fetched_at: str | None  # ISO 8601, for a fetched copy
    valid_until: dt.datetime  # the last expiry among its CAs


def cache_path(home: Path) -> Path:
    return home / "tls" / "rds-global-bundle.pem"


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def check(pem: bytes, *, from_aws: bool, where: str) -> list[x509.Certificate]:
    """The bundle's certificates, or BundleError: every one a CA, one valid now; for a
    copy fetched from AWS, every one an Amazon RDS CA."""
    if len(pem) > MAX_BYTES:
        raise BundleError(f"{where} is {len(pem):,} bytes, more than an RDS CA bundle's")
    # The loader skips blocks that are not certificates: a private key in a combined
    # file would pass, and go into the Lambda's zip with the rest.
    for label in sorted(set(_PEM_LABEL.findall(pem)) - {b"CERTIFICATE"}):
        raise BundleError(
            f"{where} holds a {label.decode(errors='replace')} block: a CA bundle holds "
            "certificates only; give a file with just the CAs' certificates"
        )
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise BundleError(f"{where} holds no PEM certificates") from None
    now = dt.datetime.now(dt.UTC)
    for certificate in certificates:
        subject = certificate.subject.rfc4514_string()
        try:
            is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise BundleError(f"{where}: {subject} is not a certificate authority")
        units = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        if from_aws and RDS_UNIT not in {unit.value for unit in units}:
            raise BundleError(f"{where}: {subject} is not an {RDS_UNIT} CA")
    if not any(c.not_valid_before_utc <= now <= c.not_valid_after_utc for c in certificates):
        raise BundleError(f"{where}: none of its certificates is valid today")
    return certificates


_PEM_LABEL = re.compile(rb"-----BEGIN ([^-\r\n]{1,80})-----")


def _read_own(path: Path, remedy: str = "", *, link: bool = True) -> bytes:
    """The file's bytes, if rds_tls.read_trusted trusts it; otherwise BundleError."""
    try:
        return read_trusted(path, MAX_BYTES + 1, link=link)
    except UntrustedFile as exc:
        if exc.kind == "unreadable":
            raise BundleError(f"cannot read the RDS CA bundle {path}: {exc}") from None
        if exc.kind == "not a file":
            raise BundleError(f"the RDS CA bundle {path} {exc}") from None
        if exc.kind == "folder":  # fetched again, it would land in the same folder
            raise BundleError(
                f"{path} {exc} Fix that folder's owner or mode, or point {BUNDLE_SETTING} "
                "at a copy in a folder of your own"
            ) from None
        raise BundleError(
            f"{path} {exc} "
            + (remedy or "Remove it; `cruddur rds ca-bundle --refresh` fetches it again")
        ) from None


def bundle_path(home: Path, env: Mapping[str, str], *, fetch: bool = True) -> Path:
    """The bundle's path: CRUDDUR_RDS_CA_BUNDLE's, else the kept copy, fetched first if
    there is none yet (unless `fetch` is False: then just where it will be)."""
    given = env.get(BUNDLE_SETTING, "").strip()
    if given:
        path = Path(given)
        if fetch:
            own = _read_own(path, f"Fix its owner or mode, or point {BUNDLE_SETTING} elsewhere")
            check(own, from_aws=False, where=f"{BUNDLE_SETTING} ({path})")
        return path
    path = cache_path(home)
    if not fetch:
        return path
    if not path.exists():
        refresh(home)
    else:
        check(_read_own(path, link=False), from_aws=True, where=str(path))  # written here
    return path


def _download(url: str, context: ssl.SSLContext | None) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "cruddur"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT, context=context) as response:
            return response.read(MAX_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise BundleError(
            f"cannot fetch the RDS CA bundle from {url}: {exc}. Download global-bundle.pem "
            f"from there on a machine that can, and set {BUNDLE_SETTING} to its path"
        ) from None


def refresh(
    home: Path, *, url: str = GLOBAL_BUNDLE_URL, context: ssl.SSLContext | None = None
) -> Bundle:
    """Fetch the bundle (HTTPS, the system's CAs unless `context`), check it, keep it."""
    pem = _download(url, context or ssl.create_default_context())
    check(pem, from_aws=True, where=url)
    path = cache_path(home)
    # As every other use of the home makes it (mkdir's mode passes through the umask:
    # under 002 a home made here was refused as group-writable by the next command).
    private_folder(home, 0o755)
    private_folder(path.parent)
    fetched_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    _write(path, pem)
    _write(_meta_path(path), json.dumps({"url": url, "fetched_at": fetched_at}).encode())
    return describe(home, {})


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(partial, path)


def _meta(path: Path) -> dict[str, str]:
    """Where and when the kept bundle was fetched ({} for a side file damaged by hand: it
    only describes the bundle, which is checked on its own)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {key: value for key, value in found.items() if isinstance(value, str)}


def describe(home: Path, env: Mapping[str, str]) -> Bundle:
    """What the bundle in use is, where it came from, and until when it serves."""
    path = bundle_path(home, env)
    pem = _read_own(path)
    given = bool(env.get(BUNDLE_SETTING, "").strip())
    certificates = check(pem, from_aws=not given, where=str(path))
    meta: dict[str, str] = {}
    if not given and _meta_path(path).is_file():
        meta = _meta(_meta_path(path))
    return Bundle(
        path=path,
        source=BUNDLE_SETTING if given else meta.get("url", GLOBAL_BUNDLE_URL),
        certificates=len(certificates),
        sha256=hashlib.sha256(pem).hexdigest(),
        fetched_at=meta.get("fetched_at"),
        valid_until=max(c.not_valid_after_utc for c in certificates),
    )
