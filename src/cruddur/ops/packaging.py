"""`cruddur lambda package`: the post-confirmation function's deployment zip.

The zip holds the handler's few modules (HANDLER_FILES), the RDS CA bundle it verifies
the database's certificate with (cruddur.aws.ca_bundle), and psycopg with its binary
build for the Lambda runtime (CPython 3.12 on x86_64 or arm64), taken from manylinux
wheels on PyPI, at the versions in requirements/run.lock (the ones the tests ran against),
each wheel checked against the lock's sha256 hashes.
It is reproducible: the same sources and wheels give the same bytes, because entries
are sorted, dated 1980-01-01, given fixed permissions, and no __pycache__ goes in.
Wheels are kept under the project's home (.cruddur/lambda-wheels), so only the first
build for an architecture needs PyPI.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cruddur
from cruddur.errors import Problem
from cruddur.safe_paths import exclusive_lock, private_folder

PYTHON = "3.12"  # the Lambda runtime (python3.12) the template deploys
ARCHES = {"x86_64": "x86_64", "arm64": "aarch64"}  # Lambda's name → the wheel tags' name
# psycopg[binary] for Python 3.12 (typing-extensions: psycopg needs it below 3.13).
DEPENDENCIES = ("psycopg", "psycopg-binary", "typing-extensions")
# All the handlers import of cruddur (tests/test_post_confirmation.py and
# tests/test_purge_lambda.py check the list).
HANDLER_FILES = (
    "cruddur/__init__.py",
    "cruddur/config.py",
    "cruddur/errors.py",
    "cruddur/urls.py",
    "cruddur/names.py",
    "cruddur/rds_tls.py",
    "cruddur/path_walk.py",
    "cruddur/groups.py",
    "cruddur/deadlines.py",
    "cruddur/connecting.py",
    "cruddur/lambdas/__init__.py",
    "cruddur/lambdas/post_confirmation.py",
    "cruddur/lambdas/purge_expired.py",
    "cruddur/services/__init__.py",
    "cruddur/services/sign_up.py",
    # Imported only when the function is traced (an OTLP endpoint set).
    "cruddur/telemetry/__init__.py",
    "cruddur/telemetry/logs.py",
    "cruddur/telemetry/metrics.py",
    "cruddur/telemetry/counts_folder.py",
    "cruddur/telemetry/tracing.py",
    "cruddur/telemetry/scrub.py",
    "cruddur/db/sql/users/create_from_cognito.sql",
    "cruddur/db/sql/users/by_cognito_user_id.sql",
    "cruddur/db/sql/activities/purge_cutoff.sql",
    "cruddur/db/sql/activities/purge_lock.sql",
    "cruddur/db/sql/activities/purge_batch.sql",
    # The roots an RDS Proxy endpoint's certificate chains to (cruddur.rds_tls).
    "cruddur/amazon-trust-roots.pem",
)
# The RDS CA bundle, beside the package, where cruddur.rds_tls.PACKAGED_BUNDLE looks.
BUNDLE_ENTRY = "cruddur/rds-ca-bundle.pem"
HANDLER = "cruddur.lambdas.post_confirmation.handler"
PURGE_HANDLER = "cruddur.lambdas.purge_expired.handler"  # deploy/purge-expired.yaml
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry
FILE_MODE = 0o100644  # a regular file, rw-r--r--: readable by the Lambda runtime's user

Progress = Callable[[str, int, int], None]  # (what, done, total)


class PackagingError(Problem):
    """The package cannot be built; the message says why and what to do."""


@dataclass(frozen=True)
class Package:
    path: Path
    arch: str
    size: int
    sha256: str
    entries: int
    wheels: tuple[str, ...]  # file names


def lock_file() -> Path:
    """The lock the API installs from (bin/lock makes it); the zip's psycopg comes from it."""
    return source_root().parent / "requirements" / "run.lock"


def locked(lock: Path | None = None) -> dict[str, tuple[str, frozenset[str]]]:
    """DEPENDENCIES' pins in the lock: name → (version, the sha256 of each of its files)."""
    lock = lock or lock_file()
    try:
        text = lock.read_text()
    except OSError:
        raise PackagingError(
            f"no lock file at {lock}: build the package from a checkout (bin/lock makes it)"
        ) from None
    found: dict[str, tuple[str, frozenset[str]]] = {}
    # Entries: "name==version [; marker] \" then one "--hash=sha256:…" per line.
    for entry in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9_.-]+)==([^\s;\\]+)", entry)
        if match and _normalise(match[1]) in {_normalise(d) for d in DEPENDENCIES}:
            hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
            found[_normalise(match[1])] = (match[2], hashes)
    missing = [d for d in DEPENDENCIES if _normalise(d) not in found]
    if missing:
        raise PackagingError(f"{lock} pins no {', '.join(missing)}: run bin/lock")
    return found


def requirements(lock: Path | None = None) -> list[str]:
    """The pinned dependencies, as the lock has them (the versions the tests ran on)."""
    pins = locked(lock)
    return [f"{name}=={pins[_normalise(name)][0]}" for name in DEPENDENCIES]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_fits(filename: str, requirement: str, arch: str) -> bool:
    """Whether a wheel file is `name==version` for CPython 3.12 on Linux `arch`."""
    name, wanted = requirement.split("==")
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) not in (5, 6) or not filename.endswith(".whl"):
        return False
    python, abi, platform = parts[-3:]
    cpython = "cp" + PYTHON.replace(".", "")
    return (
        _normalise(parts[0]) == _normalise(name)
        and parts[1] == wanted
        and bool({"py3", cpython} & set(python.split(".")))
        and abi in ("none", "abi3", cpython)
        and (
            platform == "any"
            or any(
                tag.startswith("manylinux") and tag.endswith(f"_{ARCHES[arch]}")
                for tag in platform.split(".")
            )
        )
    )


def _cached(cache: Path, pinned: list[str], arch: str, hashes: frozenset[str]) -> list[Path] | None:
    found = []
    for requirement in pinned:
        fits = sorted(
            p
            for p in cache.glob("*.whl")
            if wheel_fits(p.name, requirement, arch) and _sha256(p) in hashes
        )
        if not fits:
            return None
        found.append(fits[0])
    return found


def wheels(cache: Path, arch: str, progress: Progress | None = None) -> list[Path]:
    """The dependency wheels for `arch`, from the cache or else downloaded into it."""
    pins = locked()
    pinned = requirements()
    # A wheel is used only if its sha256 is one the lock lists for that release: a file
    # swapped in the cache or on the way from PyPI does not get into the zip.
    hashes = frozenset().union(*(allowed for _, allowed in pins.values()))
    private_folder(cache, 0o755)  # another user's folder could swap wheels after the check
    # One download at a time per cache (parallel test workers, two terminals).
    with exclusive_lock(cache / ".lock"):
        found = _cached(cache, pinned, arch, hashes)
        if found is not None:
            return found
        if progress:
            progress(f"downloading {len(pinned)} wheels for {arch} from PyPI", 0, 0)
        machine = ARCHES[arch]
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--dest", str(cache), "--no-deps", "--only-binary=:all:",
            "--implementation", "cp", "--python-version", PYTHON,
            "--abi", "cp" + PYTHON.replace(".", ""),
            "--platform", f"manylinux2014_{machine}", "--platform", f"manylinux_2_28_{machine}",
            "--require-hashes", "--requirement", "/dev/stdin",
        ]  # fmt: skip
        wanted = "".join(
            f"{name}=={pins[_normalise(name)][0]} "
            + " ".join(f"--hash=sha256:{h}" for h in sorted(pins[_normalise(name)][1]))
            + "\n"
            for name in DEPENDENCIES
        )
        done = subprocess.run(command, input=wanted, capture_output=True, text=True, check=False)
        found = _cached(cache, pinned, arch, hashes)
        if done.returncode != 0 or found is None:
            errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
            reason = errors[-1] if errors else f"pip exited with status {done.returncode}"
            raise PackagingError(
                f"could not download the {arch} wheels ({', '.join(pinned)}): {reason}. "
                "The first build for an architecture needs PyPI; later ones use "
                f"the wheels kept in {cache}"
            )
        return found


def _wheel_entries(wheel: Path) -> dict[str, tuple[Path, str]]:
    """arcname → (wheel, member) for the files a wheel installs into site-packages."""
    entries = {}
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.endswith("/") or "__pycache__/" in member or member.endswith(".pyc"):
                continue
            target = member
            if ".data/" in member.split("/", 1)[0] + "/":
                # name-1.0.data/purelib/x → x; scripts, headers and data do not belong here.
                _, kind, *rest = member.split("/")
                if kind not in ("purelib", "platlib") or not rest:
                    continue
                target = "/".join(rest)
            entries[target] = (wheel, member)
    return entries


def source_root() -> Path:
    """The folder holding the `cruddur` package (src/ in a checkout)."""
    return Path(cruddur.__file__).resolve().parent.parent


ZIP_NAME = "post-confirmation.zip"


def default_output() -> Path:
    """The checkout's dist/post-confirmation.zip, whatever the current folder: where
    deploy/*.yaml's CodeUri (../dist/post-confirmation.zip, read relative to deploy/) finds
    it. Relative to the current folder, a build run from deploy/ went to deploy/dist/, and
    `sam deploy` found no zip, or an older one."""
    return source_root().parent / "dist" / ZIP_NAME


def check_output(output: Path) -> None:
    """Refuse, before anything is fetched, an output the zip cannot be written to.

    Not a file's path: the zip is written beside it and renamed over it, which would
    replace a link such as /dev/stdout (as root, for every process on the machine) or a
    device such as /dev/null, and write nothing through them. A folder where no file can
    be made (/proc, a path under a file): tried by making one and removing it, since
    os.access says yes to root wherever the folder is read-only or not a real one."""
    if output.is_dir() and not output.is_symlink():
        raise PackagingError(
            f"{output} is a folder: --output takes the path of the zip file to write, "
            f"e.g. {output / ZIP_NAME}"
        )
    if output.is_symlink() or (output.exists() and not output.is_file()):
        raise PackagingError(
            f"{output} is a link, a device or a pipe: --output takes the path of the zip file "
            "to write (it is replaced whole, never written through)"
        )
    folder = output.parent  # build() makes the folders missing below the nearest one there
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise PackagingError(f"cannot write {output}: {folder} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=f".{output.name}.")
    except OSError as exc:
        raise PackagingError(
            f"cannot write {output}: no file can be made in {folder} ({exc.strerror or exc})"
        ) from None
    os.close(handle)
    os.unlink(probe)


def build(
    output: Path, arch: str, cache: Path, ca_bundle: Path, progress: Progress | None = None
) -> Package:
    """Write the zip to `output` (atomically) and describe it; `ca_bundle` is the checked
    RDS CA bundle the function verifies the database with."""
    check_output(output)
    if arch not in ARCHES:
        raise PackagingError(f"unknown architecture {arch!r}: use {' or '.join(ARCHES)}")
    found = wheels(cache, arch, progress)
    sources: dict[str, tuple[Path, str | None]] = {}
    for wheel in found:
        for arcname, (path, member) in _wheel_entries(wheel).items():
            if arcname in sources:
                raise PackagingError(f"{arcname} is in two wheels: {sources[arcname][0].name}")
            sources[arcname] = (path, member)
    root = source_root()
    for relative in HANDLER_FILES:
        if relative in sources:
            raise PackagingError(f"{relative} is in a wheel and in cruddur")
        sources[relative] = (root / relative, None)
    sources[BUNDLE_ENTRY] = (ca_bundle, None)

    output.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(sources)
    handle, temporary = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    os.close(handle)
    try:
        archives: dict[Path, zipfile.ZipFile] = {}
        with zipfile.ZipFile(temporary, "w") as bundle:
            for index, name in enumerate(names, 1):
                path, member = sources[name]
                if member is None:
                    data = path.read_bytes()
                else:
                    if path not in archives:
                        archives[path] = zipfile.ZipFile(path)
                    data = archives[path].read(member)
                info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
                info.create_system = 3  # Unix, so that the mode below is read
                info.external_attr = FILE_MODE << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                # zlib's default level: the higher ones spend far more time for a few bytes.
                bundle.writestr(info, data, compresslevel=6)
                if progress:
                    progress("writing the zip", index, len(names))
        for archive in archives.values():
            archive.close()
        os.chmod(temporary, 0o644)
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    content = output.read_bytes()
    return Package(
        path=output,
        arch=arch,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        entries=len(names),
        wheels=tuple(wheel.name for wheel in found),
    )
