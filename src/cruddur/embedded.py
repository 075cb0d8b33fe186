"""A PostgreSQL server that the project starts by itself when no CONNECTION_URL is set.

Its cluster lives under `<CRUDDUR_HOME>/postgres/` (git-ignored); it listens on
127.0.0.1 only, on a free port picked at first start, with a generated password. The
server binaries come from, in order: CRUDDUR_PG_BIN, Debian's
/usr/lib/postgresql/<major>/bin (with the contrib extensions), the PATH, and the
`pgserver` wheel from PyPI.

As root, the server runs as the `postgres` user, which owns the cluster's folder. What
root trusts (the port, the passwords, where the binaries are) is kept apart, in
`<CRUDDUR_HOME>/postgres.json`, in a folder only root can write: the server's user, or
any database superuser through `COPY … TO PROGRAM`, must not be able to change what
root runs next.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cruddur.errors import Problem
from cruddur.ports import unused_port
from cruddur.safe_paths import (
    UnsafePath,
    check_private_folder,
    exclusive_lock,
    private_folder,
    read_private,
    trusted_program,
    write_private,
)
from cruddur.urls import with_database, with_user

SUPERUSER = "postgres"
# As root, the server runs as this user; made (a system user) when the machine has none.
SERVER_USER = "postgres"
USERADD = Path("/usr/sbin/useradd")
APP_DATABASE = "cruddur"
# Set (to 1) by the test suite for the clusters it makes and throws away: initdb skips
# its final sync to disk (1-3 s of its time here), and the server starts without fsync
# (a commit, a CREATE DATABASE and a shutdown checkpoint stop waiting on the disk). Only
# an operating-system crash can lose what fsync protects: a server killed or stopped in
# any mode (`pg_ctl stop -m immediate`, an outage test's crash) loses nothing by it.
# Never set it for a cluster whose data you keep; the suite starts the checkout's own
# server before it sets it.
THROWAWAY_VARIABLE = "CRUDDUR_THROWAWAY_CLUSTERS"
THROWAWAY_SETTINGS = {"fsync": "off", "full_page_writes": "off"}


def _throwaway() -> bool:
    return os.environ.get(THROWAWAY_VARIABLE) == "1"


_REQUIRED = ("initdb", "pg_ctl", "postgres")
STOP_MODES = ("smart", "fast", "immediate")


PidFileKind = Literal["own", "moved", "copy"]


class EmbeddedError(Problem, RuntimeError):
    """The embedded server could not be found, set up or started; the message says why."""


# Longer than any server program needs here (pg_ctl start waits 60 s at most, initdb
# takes seconds): only a program stuck on something planted in the folder runs into it.
RUN_AS_TIMEOUT = 180.0


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
        # Never a shared account such as `nobody`: whatever else runs as it could then
        # reach the cluster, and its files would belong to every such program.
        try:
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError:
            entry = _make_server_user()
        if entry.pw_uid == 0:
            raise EmbeddedError(f"the '{SERVER_USER}' user is root (uid 0); it must not be")
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name)

    @property
    def is_me(self) -> bool:
        return self.uid == os.geteuid()

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
        try:
            return subprocess.run(
                args, capture_output=True, text=True, env=env, check=False,
                timeout=RUN_AS_TIMEOUT, **switch,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            # pg_ctl opening a pipe planted in the server's folder waited for ever.
            raise EmbeddedError(
                f"{Path(args[0]).name} did not finish within {RUN_AS_TIMEOUT:.0f} s",
                "look at the server's folder and log for a file that is not PostgreSQL's",
            ) from None


def _make_server_user() -> pwd.struct_passwd:
    """A system user for the server, as Debian's postgresql package would make it."""
    refusal = (
        f"running as root, and there is no '{SERVER_USER}' user to run PostgreSQL (it "
        "refuses to run as root)"
    )
    if not USERADD.is_file():
        raise EmbeddedError(
            f"{refusal}, and no {USERADD} to make one: create a system user "
            f"'{SERVER_USER}', or run cruddur as an ordinary user"
        )
    command = [
        str(trusted_program(USERADD)), "--system", "--user-group", "--no-create-home",
        "--home-dir", "/var/lib/postgresql", "--shell", "/usr/sbin/nologin",
        "--comment", "PostgreSQL server (made by cruddur)", SERVER_USER,
    ]  # fmt: skip
    made = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise EmbeddedError(
            f"{refusal}, and `useradd` could not make one: {made.stderr.strip()}"
        ) from None


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


def trusted_bin_dir(directory: Path) -> Path:
    """The folder, once the server programs in it are ones only root (or you) can change."""
    for tool in _REQUIRED:
        trusted_program(directory / tool)
    return directory


# Run as root from a folder private to root (/root/…, a mktemp dir), the server's own
# user cannot reach the checkout. Its files then go here instead: /var/lib is writable
# by root alone, so nobody else can plant a link or a program in these folders.
SHARED_ROOT = Path("/var/lib/cruddur")


def _root_owned_folder(path: Path) -> Path:
    """Make (or reuse) a folder that only root can have made, 0755."""
    for folder in (path.parent, path):
        try:
            folder.mkdir(mode=0o755)
            made = True
        except FileExistsError:
            made = False
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            raise EmbeddedError(f"{folder} is not a folder only root can write; remove it")
        ours = made or folder == SHARED_ROOT or SHARED_ROOT in folder.parents
        if ours and stat.S_IMODE(info.st_mode) != 0o755:
            # Made under a umask such as 027 (now, or by an earlier run): the server's
            # user could not pass through, and initdb failed. Only cruddur's own folders
            # (never /var/lib itself).
            os.chmod(folder, 0o755)
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
        try:
            shutil.copytree(install, staging / package.name / install.name)
            libs = package.parent / f"{package.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name)
            for folder in (staging, staging / package.name):
                folder.chmod(0o755)
            try:
                os.rename(staging, copy)
            except OSError as exc:
                # Another home's first start made the same copy meanwhile: it is as
                # good (the same binaries), and this one goes. (It ended in "unexpected
                # OSError: Directory not empty", a staging folder left behind.)
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not copy.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # renamed: gone already
    _root_owned_folder(copy)
    return copied_bin


def _free_port() -> int:
    return unused_port()


def _serves(pid: int, data_dir: Path) -> bool | None:
    """Whether process `pid` runs with `data_dir` as its current folder, as a postmaster
    does in its data folder (which follows the folder when it is moved); None when that
    cannot be told (another user's process, no /proc)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    try:
        return os.path.samefile(f"/proc/{pid}/cwd", data_dir)
    except FileNotFoundError:
        return False if Path("/proc/self").exists() else None
    except OSError:
        return None


def _port_in_use(port: int) -> bool:
    """Whether the server could not listen on `port`: bound as PostgreSQL binds it
    (SO_REUSEADDR on, so a TIME_WAIT alone is no obstacle). Trying to connect saw only
    listeners: a port that an outgoing connection holds as its own (the recorded port
    came from the same range) read as free, and the start failed "could not create any
    TCP/IP sockets" instead of moving."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


@dataclass(frozen=True)
class Status:
    running: bool
    bin_dir: Path | None
    data_dir: Path
    port: int | None
    # The data folder's old path, when the server runs from where this home was before it
    # moved (its next checkpoint fails there): `db up` refuses that; status said all was well.
    runs_from: str | None = None


# What postgres.json holds, by type: a value of another type would fail far from here
# (int("x") as the port, .get on a list) as an unexplained error.
_STATE_TYPES: dict[str, type | tuple[type, ...]] = {
    "password": str,
    "port": (int, str),  # a number; earlier versions may have kept it as text
    "bin_dir": str,
    "cluster_dir": str,
    "roles": dict,
}


def _well_formed(state: object) -> bool:
    if not isinstance(state, dict):
        return False
    for key, kind in _STATE_TYPES.items():
        if key in state and not isinstance(state[key], kind):
            return False
    port = str(state.get("port", 1))
    roles = state.get("roles", {})
    return (
        port.isdigit()
        and 0 < int(port) < 65_536
        and all(isinstance(value, str) for value in roles.values())
    )


PASSWORD_FILE_PREFIX = ".initdb-password-"  # initdb's --pwfile, while it runs


# The most of a server's file (postmaster.pid, the log's end) that is read.
SERVER_FILE_BYTES = 64 * 1024


def _read_server_file(path: Path, *, start: int = 0) -> str | None:
    """The text of a file in the server user's folder, from byte `start` (at most its last
    SERVER_FILE_BYTES), read as root may read it: never through a link (a log linked to
    a file only root can read had its FATAL line printed), never a pipe or a device (a
    database superuser can put one there with COPY … TO PROGRAM: root's command hung on
    a pipe, or read /dev/zero until memory ran out). None when missing or no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        handle.seek(max(start if start <= info.st_size else 0, info.st_size - SERVER_FILE_BYTES))
        return handle.read(SERVER_FILE_BYTES).decode(errors="replace")


def _still_running(data_dir: Path) -> str:
    """What to add to advice about a cluster this home no longer reaches: whether its
    server still runs, and how to stop it (removing the state orphaned a server no
    command of cruddur's would stop again)."""
    text = _read_server_file(data_dir / "postmaster.pid") or ""
    pid = text.split("\n", 1)[0].strip()
    if not pid.isdigit() or not _serves(int(pid), data_dir):
        return ""
    return (
        f". Its server still runs (pid {pid}): if the home was moved, stop it before "
        f"removing anything (`kill -INT {pid}`, PostgreSQL's fast shutdown); if it was "
        "copied, that server is the original's: leave it"
    )


def _file_size(path: Path) -> int:
    """A regular file's size (0 for none), without following a link."""
    try:
        info = path.lstat()
    except OSError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _why_not_started(log_file: Path, since: int, pg_ctl_said: str) -> str:
    """Why the server did not start: its last FATAL (or PANIC) line logged past byte
    `since` (where this start began: an older one, from a session days before, was given
    as the reason), without the time and pid prefix; else what pg_ctl said, unless that
    is only "could not start server; examine the log": then the log's last line (a check
    before logging starts, such as max_connections', writes no level). ("server did not
    start in time" is pg_ctl's own, and true: a long recovery still under way.)"""
    text = _read_server_file(log_file, start=since)
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for at in range(len(lines) - 1, -1, -1):
        line = lines[at]
        for level in ("FATAL:", "PANIC:"):
            if level in line:
                said = line[line.index(level) :][:300]
                # Its HINT, the line that says what to do ("Terminate any old server
                # processes …" after a crash left a backend running): it was dropped.
                after = lines[at + 1] if at + 1 < len(lines) else ""
                if "HINT:" in after:
                    said += " " + after[after.index("HINT:") :][:300]
                return said
    if "could not start server" in pg_ctl_said and lines:
        return lines[-1][:300]
    return pg_ctl_said


def _orphans_said(data_dir: Path, why: str) -> str:
    """After a crash (the postmaster killed), a backend still at work holds the old
    shared memory and no new server starts: which processes, and how to end them.
    `db status` and `db down` saw no server (there is no postmaster) and said so."""
    if "shared memory block" not in why:
        return ""
    left = sorted(pid for pid in _pids() if _serves(pid, data_dir))
    if not left:
        return ""
    pids = " ".join(map(str, left))
    return (
        f". Processes of the server that crashed still run in its folder (pid {pids}): "
        f"they end when their work does, or end them now (`kill {pids}`), then start again"
    )


def _pids() -> list[int]:
    try:
        return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:
        return []


# pg_ctl starts the server through /bin/sh with its paths in double quotes: a path the
# shell changes there broke that command ("could not start server", a log that never
# existed, or a shell syntax error), after initdb had made the cluster. Inside double
# quotes the shell takes " and ` as they come, $ before a name, a digit, {, ( or a
# special parameter, and \ before $ ` " \; any other $ or \ stays as it is.
_SHELL_CHANGES = re.compile(r'["`]|\$[\w{(*@#?$!-]|\\[$`"\\]')


def _refuse_unquotable(folder: Path) -> None:
    found = sorted({match[0][0] for match in _SHELL_CHANGES.finditer(str(folder))})
    if found:
        raise EmbeddedError(
            f"the embedded PostgreSQL cannot live in {folder}: pg_ctl cannot quote "
            f"{' '.join(found)} in a path",
            'set CRUDDUR_HOME to a folder whose path has none of " $ ` \\',
        )


class EmbeddedPostgres:
    def __init__(self, home: Path, pg_bin: Path | None = None) -> None:
        self.home = home
        # The cluster's folder: the server user's own when that user is not you (root).
        self.root = home / "postgres"
        # What you trust (port, passwords, binaries): only you can write here.
        self._state_file = home / "postgres.json"
        self._lock_file = home / "postgres.lock"
        self._explicit_bin = pg_bin
        # The port the last start() left, when another program had taken it: whoever was
        # given the old one (a `cruddur serve` running) must be told to ask again.
        self.moved_from: int | None = None

    @property
    def state_file(self) -> Path:
        return self._state_file

    @property
    def cluster_dir(self) -> Path:
        """Where the data and log live: under the home, unless the server user cannot reach it.

        The state names it with the home's path at the time: a checkout moved since found
        no cluster (and was told to remove the one it had), and a copy drove the
        original's server (its `db setup` would have dropped the original's database).
        Under the home it is the home's own folder, wherever the home is now; in the
        shared place it must be the one made for this home."""
        recorded = self._state().get("cluster_dir")
        if recorded is None:
            return self.root
        cluster = Path(str(recorded))
        if cluster.parent.parent != SHARED_ROOT:
            return self.root
        if cluster != _shared_path("data", self.root) / "cluster":
            raise EmbeddedError(
                f"{self._state_file} names the cluster {cluster}, made for this home at "
                "another path (was it moved or copied?): move it back, or remove "
                f"{self._state_file} to start afresh here" + _still_running(cluster / "data")
            )
        return cluster

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.cluster_dir / "postgres.log"

    # -- state ---------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        check_private_folder(self.home)
        try:
            text = read_private(self._state_file)
        except FileNotFoundError:
            return self._migrate()
        try:
            state = json.loads(text)
        except ValueError:
            state = None
        if not _well_formed(state):  # cut short, or edited by hand
            # The cluster it named is unknown now: under the home, or the shared place's
            # (as root, when the server's user cannot reach the home). A server still
            # running there is said, with how to stop it: following the advice alone
            # orphaned it.
            shared = _shared_path("data", self.root) / "cluster"
            clusters = [self.root] + ([shared] if shared.exists() else [])
            running = "".join(_still_running(cluster / "data") for cluster in clusters)
            raise EmbeddedError(
                f"{self._state_file} is unreadable: remove it and "
                f"{' and '.join(map(str, clusters))} to start afresh{running}"
            )
        return state

    def _migrate(self) -> dict[str, Any]:
        """Take over the state an earlier version kept inside the cluster's folder
        (postgres/server.json, a folder the server's user owns when you are root)."""
        old = self.root / "server.json"
        try:
            state = json.loads(read_private(old))
        except FileNotFoundError:
            return {}
        except (UnsafePath, ValueError) as exc:
            raise EmbeddedError(
                f"{old} cannot be trusted ({exc}); remove {self.root} to start afresh"
            ) from None
        cluster = Path(str(state.get("cluster_dir", self.root)))
        if cluster != self.root and cluster.parent.parent != SHARED_ROOT:
            raise EmbeddedError(f"{old} points at {cluster}; remove {self.root} to start afresh")
        kept = {k: state[k] for k in ("password", "port", "bin_dir", "cluster_dir") if k in state}
        self._write_state(kept)
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
        return kept

    def _save_state(self, **changes: object) -> None:
        self._write_state({**self._state(), **changes})

    def _write_state(self, state: dict[str, Any]) -> None:
        private_folder(self.home, 0o755)
        write_private(self._state_file, json.dumps(state, indent=2).encode())

    @property
    def initialized(self) -> bool:
        return "password" in self._state() and (self.data_dir / "PG_VERSION").is_file()

    def bin_dir(self) -> Path:
        recorded = self._state().get("bin_dir")
        if recorded and Path(str(recorded), "postgres").is_file():
            return trusted_bin_dir(Path(str(recorded)))  # the binaries that made the cluster
        return trusted_bin_dir(find_bin_dir(self._explicit_bin))

    def program(self, name: str) -> Path:
        """A server program (pg_ctl, psql …), checked: only root or you can change it."""
        return trusted_program(self.bin_dir() / name)

    def url(self, dbname: str = APP_DATABASE, *, role: str | None = None) -> str:
        """The URL as the superuser, or as `role` (its password recorded, see role_password)."""
        state = self._state()
        base = f"postgresql://{SUPERUSER}:{state['password']}@127.0.0.1:{state['port']}/postgres"
        if role is not None:
            base = with_user(base, role, self.role_password(role))
        return with_database(base, dbname)

    def recorded_roles(self) -> set[str]:
        """The application roles whose passwords this server keeps (`db setup` made them)."""
        return set(self._state().get("roles", {}))

    def record_role_password(self, role: str, password: str) -> None:
        """Record the password an application role has just been given."""
        with self._lock():
            roles = dict(self._state().get("roles", {}))
            if roles.get(role) != password:
                roles[role] = password
                self._save_state(roles=roles)

    def role_password(self, role: str) -> str:
        """The recorded password of an application role; made (and recorded) when missing."""
        with self._lock():
            roles = dict(self._state().get("roles", {}))
            if role not in roles:
                roles[role] = secrets.token_urlsafe(24)
                self._save_state(roles=roles)
            return str(roles[role])

    # -- lifecycle -----------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Several processes (test workers, a CLI beside a server) may start it at once.
        private_folder(self.home, 0o755)
        with exclusive_lock(self._lock_file):
            yield

    def _reachable_cluster_dir(self, run_as: RunAs) -> Path:
        if run_as.is_me:
            return private_folder(self.root)
        with contextlib.suppress(FileExistsError):
            self.root.mkdir(mode=0o700)
        info = self.root.lstat()  # the home is yours alone: nobody can swap this meanwhile
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in (0, run_as.uid):
            raise EmbeddedError(
                f"{self.root} is not a folder of yours or {run_as.name}'s; remove it"
            )
        os.chown(self.root, run_as.uid, run_as.gid, follow_symlinks=False)
        if run_as.can_write(self.root):
            return self.root
        # The server's user cannot get in (see SHARED_ROOT): its files go there instead.
        fallback = _root_owned_folder(_shared_path("data", self.root)) / "cluster"
        fallback.mkdir(mode=0o700, exist_ok=True)
        os.chown(fallback, run_as.uid, run_as.gid, follow_symlinks=False)
        return fallback

    def _initdb(self, run_as: RunAs) -> None:
        bin_dir = _reachable_bin_dir(run_as, trusted_bin_dir(find_bin_dir(self._explicit_bin)))
        cluster_dir = self._reachable_cluster_dir(run_as)
        data_dir = cluster_dir / "data"
        # An initdb of ours that never finished (killed: a Ctrl-C lets initdb clean up, a
        # kill -9 does not) is noted in the state: its half-made cluster is ours to remove.
        # Without the note, a cluster there is someone's whose password is not known.
        ours = self._state().get("making") == str(data_dir)
        if (data_dir / "PG_VERSION").exists() and not ours:
            said = "holds no password for it" if self._state_file.exists() else "is missing"
            raise EmbeddedError(
                f"{data_dir} holds a database cluster but {self._state_file} {said}, "
                f"so its password is unknown: remove {data_dir} to start afresh"
                + _still_running(data_dir)
            )
        if ours and data_dir.exists():
            shutil.rmtree(data_dir)  # a half-made cluster (rmtree does not follow links)
        elif data_dir.is_dir() and any(data_dir.iterdir()):
            # Someone's files without PG_VERSION: a cluster partly copied or restored.
            # They were removed without a word; only a half-made cluster of ours may be.
            raise EmbeddedError(
                f"{data_dir} holds files but no PG_VERSION (a cluster partly copied or "
                "restored?), and no initdb of cruddur's left it: it is kept as it is",
                f"finish restoring it (PG_VERSION included), or remove {data_dir} to start afresh",
            )
        for left in cluster_dir.glob(f"{PASSWORD_FILE_PREFIX}*"):  # a killed run's
            left.unlink(missing_ok=True)
        self._save_state(making=str(data_dir))
        password = secrets.token_urlsafe(24)
        # The password file sits in the server user's folder: hand it over through the
        # open file, never by name, which that user could point elsewhere meanwhile.
        fd, pwfile = tempfile.mkstemp(prefix=PASSWORD_FILE_PREFIX, dir=cluster_dir)
        try:
            os.fchown(fd, run_as.uid, run_as.gid)
            with os.fdopen(fd, "w") as handle:
                handle.write(password)
            result = run_as.run(
                [
                    str(trusted_program(bin_dir / "initdb")),
                    f"--pgdata={data_dir}",
                    f"--username={SUPERUSER}",
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    *(["--no-sync"] if _throwaway() else []),
                ]
            )
        finally:
            os.unlink(pwfile)
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        state = {k: v for k, v in self._state().items() if k != "making"}
        self._write_state(
            {
                **state,
                "password": password,
                "port": _free_port(),
                "bin_dir": str(bin_dir),
                "cluster_dir": str(cluster_dir),
            }
        )

    def _pg_ctl(self, run_as: RunAs, *args: str) -> subprocess.CompletedProcess[str]:
        return run_as.run([str(self.program("pg_ctl")), f"--pgdata={self.data_dir}", *args])

    def running(self) -> bool:
        if not self.initialized:
            return False
        return self._server_running(RunAs.for_current_user())

    def _server_running(self, run_as: RunAs) -> bool:
        """pg_ctl's status, for this home's cluster only. A home copied while its server
        ran (`cp -a` of a checkout) carries the original's postmaster.pid, naming that
        live server: the copy's `db up` reported it running and handed out its URL, and
        the copy's `db down` stopped it."""
        if self._pid_file_kind()[0] == "copy":
            return False
        # pg_ctl status reads postmaster.opts too (the command line it prints): a pipe
        # planted there (COPY … TO PROGRAM, as the server's user) held root's status,
        # up and down for the whole RUN_AS_TIMEOUT, 180 s.
        opts = self.data_dir / "postmaster.opts"
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.lstat(opts).st_mode):
                raise EmbeddedError(
                    f"{opts} is not a regular file (a link, a pipe or a device): "
                    "PostgreSQL makes no such file, so something else put it there",
                    f"remove it (`rm {opts}`), then run the command again",
                )
        status = self._pg_ctl(run_as, "status")
        if status.returncode == 4:
            # The data folder cannot be reached (by the server's user). It was taken for
            # "not running": a start moved the port of a server still running, then failed.
            said = (status.stderr or status.stdout).strip()
            raise EmbeddedError(f"cannot tell whether the embedded PostgreSQL runs: {said}")
        # 3, not running; 1, a pid file pg_ctl cannot read (empty, say): not running, as
        # before, and the start says why, in the server's words.
        return status.returncode == 0

    def _pid_file_kind(self) -> tuple[PidFileKind, str]:
        """Whose postmaster.pid this folder holds, and the data folder it names (line 2):
        "own" (none, or this cluster's server's, by whatever path it was started),
        "moved" (a live server still serving this folder, started before the home was
        moved here: it still reaches its files by the old path), or "copy" (another
        cluster's, carried here by a copy, or a server no longer running, its number
        perhaps reused by another process).

        Never decided on the text alone: a moved home (the same folder) named its old
        path, was taken for a copy, and its live server's pid file was removed, which
        shut that server down a minute later."""
        pid_file = self.data_dir / "postmaster.pid"
        text = _read_server_file(pid_file)
        if text is None and (pid_file.is_symlink() or pid_file.exists()):
            # PostgreSQL writes a regular file; pg_ctl, which reads it, hung on a pipe.
            raise EmbeddedError(
                f"{pid_file} is not a regular file (a link, a pipe or a device): "
                "PostgreSQL makes no such file, so something else put it there",
                f"remove it (`rm {pid_file}`), then run the command again",
            )
        try:
            pid_line, named, *_ = (text or "").splitlines()
            pid = int(pid_line)
        except ValueError:  # none, or one pg_ctl and the server judge alone
            return "own", ""
        serves_here = _serves(pid, self.data_dir)
        with contextlib.suppress(OSError):
            if os.path.samefile(named, self.data_dir):
                # Its number may since be another process's (of the server's user, even
                # root's PostgreSQL): pg_ctl took that for this server, `db up` started
                # nothing and `db down` signalled the stranger.
                return ("copy" if serves_here is False else "own"), named
        if serves_here or (serves_here is None and not os.path.exists(named)):
            return "moved", named  # live, and here, or cannot tell: its file stays
        return "copy", named

    def start(self, settings: Mapping[str, str] | None = None) -> str:
        """Set up (first time) and start the server if needed; return the app database URL.

        `settings` (server parameters, e.g. the test suite's fsync=off) apply to this start
        only, and only if the server was not running already."""
        with self._lock():
            run_as = RunAs.for_current_user()
            if not self.initialized:  # a cluster that runs already is never refused
                _refuse_unquotable(self.cluster_dir)
                self._initdb(run_as)
            kind, named = self._pid_file_kind()
            if kind == "copy":
                # A copy's: the server it names is not this cluster's, and it would keep
                # this one from starting ("another postmaster is running").
                (self.data_dir / "postmaster.pid").unlink()
            elif kind == "moved":
                # It still reads and writes its files by the old path, which is gone: its
                # next checkpoint fails (PANIC) and takes it down.
                raise EmbeddedError(
                    f"the embedded PostgreSQL still runs from {named}, where this folder "
                    "was before it moved: stop it, then start it here",
                    "`cruddur db down` stops it (as a crash: its files' old path is gone; "
                    "the next `cruddur db up` recovers from the WAL), or move the folder "
                    "back and run `cruddur db down` there for a clean shutdown",
                )
            if not self._server_running(run_as):
                port = int(str(self._state()["port"]))
                if _port_in_use(port):  # someone else took it since: move
                    self.moved_from, port = port, _free_port()
                    self._save_state(port=port)
                # On the command line rather than appended to postgresql.conf: root
                # never writes into the server user's folder (a link there would
                # redirect the write), and nothing in that folder can widen them.
                options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
                if _throwaway():
                    settings = {**THROWAWAY_SETTINGS, **(settings or {})}
                for name, value in (settings or {}).items():
                    if not re.fullmatch(r"[a-z_]+", name) or not re.fullmatch(r"[\w.]+", value):
                        raise ValueError(f"not a server setting: {name}={value}")
                    options += f" -c {name}={value}"
                logged_before = _file_size(self.log_file)
                result = self._pg_ctl(
                    run_as,
                    "start",
                    "--wait",
                    "--timeout=60",
                    f"--log={self.log_file}",
                    f"--options={options}",
                )
                if result.returncode != 0:
                    # pg_ctl says only "could not start server; examine the log": the
                    # log, since this start, says why (a bad setting, a port, the data).
                    why = _why_not_started(
                        self.log_file, logged_before, (result.stderr or result.stdout).strip()
                    )
                    raise EmbeddedError(
                        f"the embedded PostgreSQL did not start: {why} (see {self.log_file})"
                        + _orphans_said(self.data_dir, why)
                    )
            return self.url()

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server; False when it was not running. `mode` is pg_ctl's: "fast"
        (disconnect everyone, then a clean shutdown) or "immediate" (a crash: the next
        start recovers from the WAL, as after a failover)."""
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode must be one of {', '.join(STOP_MODES)}, not {mode!r}")
        if not self.home.is_dir():
            return False  # nothing was ever made here (a misspelt home): make nothing either
        with self._lock():
            if not self.initialized:
                return False
            run_as = RunAs.for_current_user()
            if not self._server_running(run_as):
                return False
            if self._pid_file_kind()[0] == "moved":
                # Its shutdown checkpoint would PANIC on the old path: the same crash,
                # without the PANIC. The next start recovers from the WAL.
                mode = "immediate"
            result = self._pg_ctl(run_as, "stop", "--wait", f"--mode={mode}")
            if result.returncode != 0:
                raise EmbeddedError(f"pg_ctl stop failed: {result.stderr.strip()}")
            return True

    def status(self) -> Status:
        port = self._state().get("port")
        try:
            bin_dir: Path | None = self.bin_dir()
        except EmbeddedError:
            bin_dir = None
        running = self.running() if bin_dir else False
        runs_from = None
        if running:
            with contextlib.suppress(EmbeddedError):  # an odd pid file: `db up` says so
                kind, named = self._pid_file_kind()
                runs_from = named if kind == "moved" else None
        return Status(
            running=running,
            bin_dir=bin_dir,
            data_dir=self.data_dir,
            port=int(str(port)) if port else None,
            runs_from=runs_from,
        )
