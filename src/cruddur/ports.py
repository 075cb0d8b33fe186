"""Claiming the port `cruddur serve` listens on, before the WSGI server starts.

granian's workers each bind with SO_REUSEPORT, so a second server on a taken port used
to start too and take half the connections. A plain bind (no SO_REUSEPORT) fails while
anything listens there, and a lock held by the server's processes catches two servers
of this checkout starting in the same instant, before either listens.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import ipaddress
import os
import random
import re
import socket
import sys
import time
from pathlib import Path

from cruddur.safe_paths import NOT_YOURS_TO_WRITE, not_writable, private_folder

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_CHOOSE = random.SystemRandom()


def unused_port(tries: int = 100) -> int:
    """A port nothing on 127.0.0.1 uses now, for a server that listens on it later, and
    again after each restart (the embedded PostgreSQL keeps its port for good).

    Chosen below the kernel's ephemeral range, where outgoing connections take their
    local ports from. One from that range (a bind to port 0) could be taken by any
    client socket while its server was down: the embedded PostgreSQL then moved to
    another at its next start, and what knew the old one (a replica following it, a
    server already running) was left asking it."""
    low = _ephemeral_range_start()
    below = max(1024, low - 16_000)
    for _ in range(tries if low - below >= 1000 else 0):  # a range from ~1024: none below
        port = _CHOOSE.randrange(below, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # that range all taken: any free port
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ephemeral_range_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; elsewhere, a port below it is as good


class PortTaken(RuntimeError):
    """Another process listens on the address (or is about to); the message says which."""


def _no_such_host(host: str) -> PortTaken:
    return PortTaken(
        f"cannot listen on {host!r}: no such host name; give an address of this "
        "machine with --host or CRUDDUR_HOST (127.0.0.1, or 0.0.0.0 for all)"
    )


def bindable_host(host: str) -> str:
    """`host` as the address the server binds: an IP address as given (without
    brackets), a name resolved, IPv4 first (localhost: 127.0.0.1). granian takes
    addresses only: a name, or a short form such as 127.1, failed with a traceback after
    the "serving" line."""
    name = host.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise _no_such_host(host) from None
    found.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(found[0][4][0])


def url_host(host: str) -> str:
    """`host` as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


_HOLD_PREFIX = "cruddur-serve-"
_ANY_ADDRESS = "*"  # the hold of a server on 0.0.0.0 or ::, which takes every address


def _hold_name(host: str, port: int) -> str:
    address = ipaddress.ip_address(host)
    # ::ffff:0.0.0.0 takes every IPv4 address as 0.0.0.0 does, ::ffff:127.0.0.1 is
    # 127.0.0.1: named as their IPv4 forms.
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    return f"{_HOLD_PREFIX}{_ANY_ADDRESS if address.is_unspecified else address}-{port}"


def _held_on_port(port: int) -> set[str]:
    """The abstract socket names of this port's holds (from /proc/net/unix)."""
    suffix = f"-{port}"
    try:
        lines = Path("/proc/net/unix").read_text(errors="replace").splitlines()[1:]
    except OSError:
        return set()
    names = set()
    for line in lines:
        # Another program's name may hold spaces or line breaks (printed as they are):
        # such a line is not one of ours, however it splits.
        fields = line.split()
        if len(fields) >= 8 and fields[-1].startswith("@"):
            names.add(fields[-1][1:])
    return {name for name in names if name.startswith(_HOLD_PREFIX) and name.endswith(suffix)}


def hold_port_on_this_machine(host: str, port: int) -> socket.socket | None:
    """On Linux, a hold on `host`'s `port` for this machine, from before the server
    starts until its last process exits: the name `cruddur-serve-<host>-<port>` in the
    abstract socket namespace (`*` for 0.0.0.0 or ::), which goes with the processes
    holding it (inheritable once made so, for the `exec`). The home's lock (`claim`)
    catches two servers of one checkout; this one, servers of two checkouts (or homes)
    starting in the same seconds, before either listens: both passed the bind check, and
    granian's SO_REUSEPORT let both serve the port. Servers on two addresses of one port
    may both run, but not one on every address beside one on any: each checks for the
    other after taking its own name. `host` is an address (bindable_host). PortTaken
    while another holds it; None elsewhere than Linux."""
    if not sys.platform.startswith("linux"):
        return None
    name = _hold_name(host, port)
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        holder.bind(f"\0{name}")
    except OSError as exc:
        holder.close()
        if exc.errno == errno.EADDRINUSE:
            raise _held(host, port) from None
        raise
    others = _held_on_port(port) - {name}
    wildcard = name.startswith(f"{_HOLD_PREFIX}{_ANY_ADDRESS}-")
    if others and (wildcard or f"{_HOLD_PREFIX}{_ANY_ADDRESS}-{port}" in others):
        holder.close()
        raise _held(host, port)
    return holder


def _held(host: str, port: int) -> PortTaken:
    return PortTaken(
        f"port {port} on {host} is held by another `cruddur serve` of this machine "
        "(starting, or of another checkout or CRUDDUR_HOME): stop it, or pick another "
        "port with --port or PORT"
    )


def _link_local_v6(host: str) -> bool:
    """An IPv6 link-local address (fe80::/10), with or without its %interface."""
    try:
        return ipaddress.IPv6Address(host.partition("%")[0]).is_link_local
    except ValueError:
        return False


def _bind_check(host: str, port: int) -> None:
    if _link_local_v6(host):
        # One needs its interface (fe80::1%eth0), which the servers cannot be given: the
        # advice to add one could not be followed.
        raise PortTaken(
            f"cannot listen on {host}: a link-local address is not supported; listen on "
            ":: (every address) or on an address of this machine that is not link-local"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Like the servers themselves: connections of a stopped server (TIME_WAIT) do not
        # block a restart, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except (socket.gaierror, UnicodeError):  # a name that does not resolve
            raise _no_such_host(host) from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(
                    f"port {port} on {host} is already in use (another `cruddur serve`?): "
                    "stop that server, or pick another port with --port or PORT"
                ) from None
            if exc.errno == errno.EACCES:
                raise PortTaken(f"not allowed to listen on port {port} on {host}") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise PortTaken(f"{host} is not an address of this machine") from None
            if exc.errno == errno.EINVAL:
                raise PortTaken(f"{host} is not an address of this machine") from None
            raise


LOCK_GLOB = "serve-*.lock"
# A sweep holds a stale lock for an instant before removing its file: a claim that
# meets it then tries again this many times, LOCK_RETRY_PAUSE apart, before refusing.
LOCK_TRIES = 5
LOCK_RETRY_PAUSE = 0.01  # seconds


# A host as it may appear in a file name; others (a slash, a name past NAME_MAX, any
# Unicode) are named by a digest instead, and the bind check then says what is wrong.
_PLAIN_HOST = re.compile(r"[A-Za-z0-9._:-]{1,100}")


def lock_path(host: str, port: int, lock_dir: Path) -> Path:
    if _PLAIN_HOST.fullmatch(host) and host not in (".", ".."):
        shown = host.replace(":", "_")
    else:
        shown = "h" + hashlib.sha256(host.encode(errors="surrogateescape")).hexdigest()[:16]
    return lock_dir / f"serve-{shown}-{port}.lock"


def _still_at(fd: int, path: Path) -> bool:
    """Whether `path` is still the file `fd` has open (a sweep may have removed it)."""
    try:
        found = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def sweep(lock_dir: Path) -> int:
    """Remove the lock files of servers that have stopped (no process holds their lock):
    the server `exec`s, so nothing of ours runs when it ends to remove its own, and a
    file per host and port used would pile up. Returns how many were removed."""
    removed = 0
    for stale in lock_dir.glob(LOCK_GLOB):
        try:
            fd = os.open(stale, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, or not a plain file of ours: leave it
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Removed while locked, and only when it is still the file at that path, so
            # a claim never holds a lock on a file another claim cannot see.
            if _still_at(fd, stale):
                stale.unlink()
                removed += 1
        except BlockingIOError:
            pass  # a running server's
        finally:
            os.close(fd)
    return removed


def claim(host: str, port: int, lock_dir: Path) -> int:
    """Check the port is free and lock it; return the lock's file descriptor.

    The descriptor is inheritable: the server `exec`ed next, and its forked workers,
    keep the lock until the last of them exits. Stopped servers' lock files are removed
    first (`sweep`).
    """
    private_folder(lock_dir, 0o755)  # the home: as every other use of it makes it
    sweep(lock_dir)
    path = lock_path(host, port, lock_dir)
    fd = lock_file(path)
    if fd is None:
        raise PortTaken(
            f"port {port} on {host} is already served by another `cruddur serve` of this "
            "checkout: stop it, or pick another port with --port or PORT"
        )
    try:
        _bind_check(host, port)
    except BaseException:
        path.unlink(missing_ok=True)  # still ours: locked, and checked to be at the path
        os.close(fd)
        raise
    os.set_inheritable(fd, True)
    return fd


def lock_file(path: Path) -> int | None:
    """A descriptor holding the lock on `path`, or None while a server holds it."""
    for attempt in range(LOCK_TRIES):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno in NOT_YOURS_TO_WRITE:
                raise not_writable(path, exc) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if attempt + 1 < LOCK_TRIES:
                time.sleep(LOCK_RETRY_PAUSE)  # a sweep's, for an instant; or a server's
            continue
        if _still_at(fd, path):
            return fd
        os.close(fd)  # swept between open and lock: lock the file now at the path
    return None
