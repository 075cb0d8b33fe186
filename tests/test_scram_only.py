"""The API's URL to the embedded server refuses to send its password to anything that
asks for it in clear text (a program of anyone's holding the server's port while it is
down), and still connects to the server itself, which asks for SCRAM."""

from __future__ import annotations

import socket
import struct
import threading

import psycopg
import pytest
from server_support import free_port

from cruddur.targets import REQUIRE_AUTH_LIBPQ, scram_only


class CleartextAsker:
    """A listener that speaks enough of PostgreSQL's protocol to ask for the password in
    clear text, and keeps what it is sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._answer, daemon=True)
        self.thread.start()

    def _answer(self) -> None:
        self.listener.settimeout(10)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                length, code = struct.unpack("!ii", conn.recv(8))
                if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: "no"
                    conn.sendall(b"N")
                    length, code = struct.unpack("!ii", conn.recv(8))
                conn.recv(length - 8)  # the startup packet's parameters
                conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
                self.received.append(conn.recv(1024))
            except (OSError, struct.error):
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


def _connect(url: str) -> None:
    with psycopg.connect(url, connect_timeout=5, sslmode="disable"):
        pass


@pytest.mark.skipif(
    psycopg.pq.version() < REQUIRE_AUTH_LIBPQ, reason="this libpq has no require_auth"
)
def test_the_password_is_never_sent_in_clear_text() -> None:
    # A review: with the embedded server down, a fake on its port asked for the password
    # in clear text and got cruddur_api's, 22 times in a second.
    for guarded, sent in ((False, True), (True, False)):
        asker = CleartextAsker()
        url = f"postgresql://cruddur_api:s3cret-pw@127.0.0.1:{asker.port}/cruddur"
        try:
            with pytest.raises(psycopg.OperationalError) as refused:
                _connect(scram_only(url) if guarded else url)
        finally:
            asker.close()
        assert any(b"s3cret-pw" in packet for packet in asker.received) is sent
        if guarded:
            assert "scram-sha-256" in str(refused.value)


def test_a_server_asking_for_scram_is_still_reached(
    needs_password_checks: None, api_url: str
) -> None:
    # The embedded server (and a test server that checks passwords) asks for SCRAM.
    with psycopg.connect(scram_only(api_url), connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
