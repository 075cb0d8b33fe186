"""A connect that fails holds no socket (cruddur.connecting): against a server that accepts
and never answers, as a database stopped mid-outage looks."""

from __future__ import annotations

import gc
import socket
import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest

from cruddur import connecting
from cruddur.db.pool import PooledConnection


@pytest.fixture
def silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A port that accepts connections and never says a word; the sockets it accepted."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.close()
    for each in accepted:
        each.close()


def _closed_by_the_client(accepted: socket.socket) -> bool:
    accepted.settimeout(1)
    try:
        return accepted.recv(1024 * 1024) == b"" or accepted.recv(1) == b""
    except TimeoutError:
        return False  # still open: nothing came, not even its end


@pytest.mark.parametrize(
    "connect", [connecting.connect, PooledConnection.connect], ids=["connect", "pool's"]
)
def test_a_connect_that_timed_out_closes_its_socket(
    silent_server, connect: Callable[..., psycopg.Connection]
) -> None:
    # The socket stayed open until the cycle collector ran: a worker probing a silent
    # database five times a second held more sockets every second, and each became a
    # backend waiting 60 s for its password once the database was back.
    port, accepted = silent_server
    enabled = gc.isenabled()
    gc.disable()  # as between two of the collector's runs
    try:
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            connect(f"postgresql://u:p@127.0.0.1:{port}/db", connect_timeout=2)
        assert len(accepted) == 1
        assert _closed_by_the_client(accepted[0])
    finally:
        if enabled:
            gc.enable()
