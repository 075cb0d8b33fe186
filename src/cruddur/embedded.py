"""A PostgreSQL server that the project starts by itself when no CONNECTION_URL is set.

It lives under `<CRUDDUR_HOME>/postgres/` (git-ignored), listens on 127.0.0.1 only, on
a free port picked at first start, with a generated password. The server binaries
come from, in order: CRUDDUR_PG_BIN, Debian's /usr/lib/postgresql/<major>/bin (with
the contrib extensions), the PATH, and the `pgserver` wheel from PyPI.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cruddur.urls import with_database

SUPERUSER = "postgres"
APP_DATABASE = "cruddur"
_REQUIRED = ("initdb", "pg_ctl", "postgres")


class EmbeddedError(RuntimeError):
    """The embedded server could not be found, set up or started; the message says why."""


@dataclass(frozen=True)
class RunAs:
    """Who runs the server: PostgreSQL refuses to run as root."""

    uid: int
    gid: int
    name: str

    @classmethod
    def for_current_user(cls) -> RunAs:
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
            return cls(entry.pw_uid, entry.pw_gid, entry.pw_name)
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return cls(entry.pw_uid, entry.pw_gid, entry.pw_name)
        raise EmbeddedError("running as root, but there is no 'postgres' user to run the server")

    def can_write(self, folder: Path) -> bool:
        return self.run(["test", "-w", str(folder), "-a", "-x", str(folder)]).returncode == 0

    def can_execute(self, program: Path) -> bool:
        return self.run(["test", "-x", str(program)]).returncode == 0

    def run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        switch: dict[str, Any] = {}
        if os.geteuid() == 0 and self.uid != 0:
            switch = {"user": self.uid, "group": self.gid, "extra_groups": []}
        # A bare environment: the server must not inherit secrets such as
        # PROD_CONNECTION_URL (COPY … FROM PROGRAM 'env' would show them).
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
        return subprocess.run(args, capture_output=True, text=True, env=env, check=False, **switch)


def _pgserver_bin() -> Path | None:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def candidate_bin_dirs(explicit: Path | None) -> list[Path]:
    if explicit is not None:
        return [explicit]
    found: list[Path] = []
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        majors = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()),
            key=lambda p: int(p.name),
            reverse=True,
        )
        found += [p / "bin" for p in majors]
    on_path = shutil.which("pg_ctl")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    pgserver = _pgserver_bin()
    if pgserver:
        found.append(pgserver)
    return found


def find_bin_dir(explicit: Path | None = None) -> Path:
    for directory in candidate_bin_dirs(explicit):
        if all((directory / tool).is_file() for tool in _REQUIRED):
            return directory
    where = str(explicit) if explicit else "/usr/lib/postgresql/*/bin, the PATH or pgserver"
    raise EmbeddedError(
        f"no PostgreSQL server binaries found in {where}: install Debian's postgresql "
        "package, or `pip install 'cruddur[embedded]'` for the pgserver wheel, "
        "or set CONNECTION_URL to a server you have"
    )


# Run as root from a folder private to root (/root/…, a mktemp dir), the server's own
# user cannot reach the checkout. Its files then go here instead: /var/lib is writable
# by root alone, so nobody else can plant a link or a program in these folders.
SHARED_ROOT = Path("/var/lib/cruddur")


def _root_owned_folder(path: Path) -> Path:
    """Make (or reuse) a folder that only root can have made, 0755."""
    for folder in (path.parent, path):
        folder.mkdir(mode=0o755, exist_ok=True)
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            raise EmbeddedError(f"{folder} is not a folder only root can write; remove it")
    return path


def _shared_path(kind: str, source: Path) -> Path:
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:16]
    return SHARED_ROOT / f"{kind}-{digest}"


def _reachable_bin_dir(run_as: RunAs, bin_dir: Path) -> Path:
    """Binaries the server user can run: a copy when they sit in a folder private to root."""
    if run_as.can_execute(bin_dir / "postgres"):
        return bin_dir
    # The pgserver wheel inside a private checkout's .venv, say: copy its install (bin,
    # lib, share) and the wheel's bundled libraries, keeping their relative places,
    # since the binaries find both relative to themselves ($ORIGIN/../../../pgserver.libs).
    install, package = bin_dir.parent, bin_dir.parent.parent
    copy = _shared_path("bin", bin_dir)
    copied_bin = copy / package.name / install.name / bin_dir.name
    if not copy.exists():
        # Copy beside, then rename: a copy cut short is never taken for a whole one.
        staging = Path(tempfile.mkdtemp(dir=_root_owned_folder(SHARED_ROOT)))
        shutil.copytree(install, staging / package.name / install.name)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name)
        for folder in (staging, staging / package.name):
            folder.chmod(0o755)
        os.rename(staging, copy)
    _root_owned_folder(copy)
    return copied_bin


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Status:
    running: bool
    bin_dir: Path | None
    data_dir: Path
    port: int | None


class EmbeddedPostgres:
    def __init__(self, home: Path, pg_bin: Path | None = None) -> None:
        self.root = home / "postgres"
        self._state_file = self.root / "server.json"
        self._explicit_bin = pg_bin

    @property
    def cluster_dir(self) -> Path:
        """Where the data and log live: under root, unless the server user cannot reach it."""
        return Path(str(self._state().get("cluster_dir", self.root)))

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.cluster_dir / "postgres.log"

    # -- state ---------------------------------------------------------------------

    def _state(self) -> dict[str, object]:
        try:
            return json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise EmbeddedError(
                f"{self._state_file} is unreadable: remove it and {self.root} to start afresh"
            ) from None

    def _save_state(self, **changes: object) -> None:
        state = {**self._state(), **changes}
        # Write beside and rename, so a crash never leaves a half-written file.
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".server-", suffix=".json")
        with os.fdopen(fd, "w") as handle:  # mkstemp makes it 0600: it holds the password
            json.dump(state, handle, indent=2)
        os.replace(temporary, self._state_file)

    @property
    def initialized(self) -> bool:
        return self._state_file.is_file() and (self.data_dir / "PG_VERSION").is_file()

    def bin_dir(self) -> Path:
        recorded = self._state().get("bin_dir")
        if recorded and Path(str(recorded), "postgres").is_file():
            return Path(str(recorded))  # the binaries that made the cluster
        return find_bin_dir(self._explicit_bin)

    def url(self, dbname: str = APP_DATABASE) -> str:
        state = self._state()
        base = f"postgresql://{SUPERUSER}:{state['password']}@127.0.0.1:{state['port']}/postgres"
        return with_database(base, dbname)

    # -- lifecycle -----------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Several processes (test workers, a CLI beside a server) may start it at once.
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root.parent / "postgres.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _reachable_cluster_dir(self, run_as: RunAs) -> Path:
        os.chown(self.root, run_as.uid, run_as.gid)
        if run_as.can_write(self.root):
            return self.root
        # The server's user cannot get in (see SHARED_ROOT): its files go there instead.
        fallback = _root_owned_folder(_shared_path("data", self.root)) / "cluster"
        fallback.mkdir(mode=0o700, exist_ok=True)
        os.chown(fallback, run_as.uid, run_as.gid, follow_symlinks=False)
        return fallback

    def _initdb(self, run_as: RunAs) -> None:
        bin_dir = _reachable_bin_dir(run_as, find_bin_dir(self._explicit_bin))
        cluster_dir = self._reachable_cluster_dir(run_as)
        data_dir = cluster_dir / "data"
        if (data_dir / "PG_VERSION").exists():
            raise EmbeddedError(
                f"{data_dir} holds a database cluster but {self._state_file} is missing, "
                f"so its password is unknown: remove {data_dir} to start afresh"
            )
        if data_dir.exists():
            shutil.rmtree(data_dir)  # a half-made cluster from an interrupted initdb
        password = secrets.token_urlsafe(24)
        with tempfile.NamedTemporaryFile("w", dir=cluster_dir, delete=False) as pwfile:
            pwfile.write(password)
        try:
            os.chown(pwfile.name, run_as.uid, run_as.gid)
            result = run_as.run(
                [
                    str(bin_dir / "initdb"),
                    f"--pgdata={data_dir}",
                    f"--username={SUPERUSER}",
                    f"--pwfile={pwfile.name}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        finally:
            os.unlink(pwfile.name)
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        with open(data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# cruddur: reachable from this machine only, over TCP.\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
            )
        self._save_state(
            password=password,
            port=_free_port(),
            bin_dir=str(bin_dir),
            cluster_dir=str(cluster_dir),
        )

    def _pg_ctl(self, run_as: RunAs, *args: str) -> subprocess.CompletedProcess[str]:
        return run_as.run([str(self.bin_dir() / "pg_ctl"), f"--pgdata={self.data_dir}", *args])

    def running(self) -> bool:
        if not self.initialized:
            return False
        return self._pg_ctl(RunAs.for_current_user(), "status").returncode == 0

    def start(self) -> str:
        """Set up (first time) and start the server if needed; return the app database URL."""
        with self._lock():
            run_as = RunAs.for_current_user()
            if not self.initialized:
                self._initdb(run_as)
            if self._pg_ctl(run_as, "status").returncode != 0:
                port = int(str(self._state()["port"]))
                if _port_in_use(port):  # someone else took it since: move
                    port = _free_port()
                    self._save_state(port=port)
                result = self._pg_ctl(
                    run_as,
                    "start",
                    "--wait",
                    "--timeout=60",
                    f"--log={self.log_file}",
                    f"--options=-p {port}",
                )
                if result.returncode != 0:
                    raise EmbeddedError(
                        f"the embedded PostgreSQL did not start; see {self.log_file}: "
                        f"{(result.stderr or result.stdout).strip()}"
                    )
            return self.url()

    def stop(self) -> bool:
        """Stop the server; False when it was not running."""
        with self._lock():
            if not self.initialized:
                return False
            run_as = RunAs.for_current_user()
            if self._pg_ctl(run_as, "status").returncode != 0:
                return False
            result = self._pg_ctl(run_as, "stop", "--wait", "--mode=fast")
            if result.returncode != 0:
                raise EmbeddedError(f"pg_ctl stop failed: {result.stderr.strip()}")
            return True

    def status(self) -> Status:
        port = self._state().get("port")
        try:
            bin_dir: Path | None = self.bin_dir()
        except EmbeddedError:
            bin_dir = None
        return Status(
            running=self.running() if bin_dir else False,
            bin_dir=bin_dir,
            data_dir=self.data_dir,
            port=int(str(port)) if port else None,
        )
