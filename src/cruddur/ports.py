"""Claiming the port `cruddur serve` listens on, before the WSGI server starts.

granian's workers each bind with SO_REUSEPORT, so a second server on a taken port used
to start too and take half the connections. A plain bind (no SO_REUSEPORT) fails while
anything listens there, and a lock held by the server's processes catches two servers
of this checkout starting in the same instant, before either listens.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path


class PortTaken(RuntimeError):
    """Another process listens on the address (or is about to); the message says which."""


def _bind_check(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Like the servers themselves: connections of a stopped server (TIME_WAIT) do not
        # block a restart, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
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
            raise


def claim(host: str, port: int, lock_dir: Path) -> int:
    """Check the port is free and lock it; return the lock's file descriptor.

    The descriptor is inheritable: the server `exec`ed next, and its forked workers,
    keep the lock until the last of them exits.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"serve-{host.replace(':', '_')}-{port}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PortTaken(
            f"port {port} on {host} is already served by another `cruddur serve` of this "
            "checkout: stop it, or pick another port with --port or PORT"
        ) from None
    try:
        _bind_check(host, port)
    except BaseException:
        os.close(fd)
        raise
    os.set_inheritable(fd, True)
    return fd
