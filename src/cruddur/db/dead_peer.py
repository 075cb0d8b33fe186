"""Client-side bounds on a database that stops answering without closing the connection.

A network partition, or an RDS host that vanishes mid-failover, drops packets: no RST,
no FIN. `statement_timeout` runs on the server and cannot help; libpq would wait in recv
until the kernel gives up on the TCP connection (about 15 min of retransmissions for data
sent, for ever for a connection that only waits for a result). Two kernel bounds, set
through libpq's connection parameters, end such a connection on this side instead:

- `tcp_user_timeout`: data sent and not acknowledged for this long (a query sent into
  the hole, the pool's check) ends the connection;
- TCP keepalives: a connection with nothing to send (a query acknowledged, its result
  awaited; a LISTEN) sends a probe after `keepalives_idle` of silence, then every
  `keepalives_interval`. Linux ends it once the probes have gone unanswered for
  tcp_user_timeout (with tcp_user_timeout 0: after `keepalives_count` of them), so the
  wait is about max(idle + interval, tcp_user_timeout) from the last packet received.

Either ends the request with a connection error: the pool discards the connection, the
API's Reachability probes (PROBE_CONNECT_TIMEOUT, 2 s against a black-holed SYN) and
answers 503 with Retry-After at once from then on. 2 s + 2 s keeps the slowest request
under the 5 s promised (README, "Outages"). Lower would cut healthy connections on a
lossy path: three retransmissions (0.2 + 0.4 + 0.8 s at the smallest RTO) fit in 2 s.
A connection parameter the URL sets itself (`?tcp_user_timeout=…`, `?keepalives_idle=…`)
wins over these.

The CLI's verbs (`db migrate`, `db seed --fake`, `db status`…) get gentler bounds of
their own (CLI_DEAD_PEER_BOUNDS): they may cross the internet to RDS, nobody waits on
them with a 5 s promise, and without any bound one whose database vanished mid-statement
waited for ever instead of ending, in about 30 s, with a connection error. A statement
that runs long on a live server (an index build) is unaffected: the server's kernel
answers the probes.
"""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

TCP_USER_TIMEOUT_MS = 2000  # unacknowledged data this long ends the connection
KEEPALIVES_IDLE = 1  # seconds of silence before the first probe (libpq's unit: whole s)
KEEPALIVES_INTERVAL = 1  # seconds between probes
KEEPALIVES_COUNT = 2  # probes unanswered, where tcp_user_timeout is 0 (idle + 2 x 1 s)

DEAD_PEER_BOUNDS: dict[str, int] = {
    "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
    "keepalives": 1,
    "keepalives_idle": KEEPALIVES_IDLE,
    "keepalives_interval": KEEPALIVES_INTERVAL,
    "keepalives_count": KEEPALIVES_COUNT,
}


CLI_TCP_USER_TIMEOUT_MS = 30_000
CLI_DEAD_PEER_BOUNDS: dict[str, int] = {
    "tcp_user_timeout": CLI_TCP_USER_TIMEOUT_MS,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 4,  # 10 + 4 x 5 s: what tcp_user_timeout allows, where it is 0
}


def with_dead_peer_bounds(conninfo: str, bounds: dict[str, int] = DEAD_PEER_BOUNDS) -> str:
    """`conninfo` with the bounds above for each parameter it does not set itself.

    Unparsable conninfo is returned as it is: connecting reports why, as before. libpq
    applies them to TCP connections only (a Unix socket has no such wait)."""
    try:
        given = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return conninfo
    missing = {k: v for k, v in bounds.items() if k not in given}
    return make_conninfo(conninfo, **missing) if missing else conninfo


def with_cli_bounds(conninfo: str) -> str:
    """`conninfo` with the CLI's gentler bounds, for each parameter it does not set."""
    return with_dead_peer_bounds(conninfo, CLI_DEAD_PEER_BOUNDS)
