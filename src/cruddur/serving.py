"""How `cruddur serve` runs a WSGI server: its command line and the limits it runs with.

The settings that keep hostile clients from taking the service down (README, "Serving"):
- `--http 1`: in granian's default `auto` mode a connection that never sends a byte waits
  forever to be told HTTP/1 from HTTP/2 (hyper's header timer starts at the first byte);
  HTTP/1 alone starts the timer at once, so idle sockets are closed too.
- `--http1-header-read-timeout`: a client has that long to send a request's headers,
  whether it sends nothing or a byte at a time; it also bounds an idle keep-alive.
- `--http1-buffer-size`: bounds what a connection's headers may take in memory. granian
  took 200 kB of headers by default (2,000 slow sockets could hold ~800 MB); at 32 kB a
  request's headers may be ~30 kB (nginx allows 32 kB, a token ~2 kB), more is a 431.
- `--backpressure`: each open connection holds one of these permits per worker for its
  whole life, idle or not. granian's default (backlog / workers = 512) let about 1,025
  idle sockets stop the service; the permits now follow the open-files limit.
- `--workers-kill-timeout`: a worker that does not stop within it is killed, so one
  SIGINT or SIGTERM always ends the server and all its workers.
- `--respawn-failed-workers`: a worker that dies (the OOM killer, a crash in a C
  extension) is replaced at once, as gunicorn replaces its own; by default granian
  stopped the whole server, its other workers serving included. One that dies again
  within 5.5 s of being replaced still stops it (granian's crash loop rule).
- `-m cruddur.granian_main`: granian itself, with workers that start with the default
  stop actions, so a stop as a worker starts ends it at once, not at the kill timeout.
"""

from __future__ import annotations

import resource
import sys

GRANIAN_FACTORY = "cruddur.worker:create_worker_app"  # resets signals before loading
GUNICORN_FACTORY = "cruddur.api:create_worker_app()"  # gunicorn sets its own first
GUNICORN_CONFIG = "python:cruddur.gunicorn_config"  # removes what serve made at the end

WANTED_OPEN_FILES = 65_536
RESERVED_FILES = 256  # per worker: pool connections, logs, the app's own files
MAX_CONNECTIONS_PER_WORKER = 16_384
WORKERS_KILL_TIMEOUT = 5  # seconds
LISTEN_BACKLOG = 2048
HTTP1_BUFFER_SIZE = 32_768  # bytes a connection buffers: headers up to ~30 kB (above)


def raise_open_files_limit(wanted: int = WANTED_OPEN_FILES) -> int:
    """Raise this process's soft limit on open files towards the hard one (the server,
    exec'ed next, and its workers inherit it); return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft if soft != resource.RLIM_INFINITY else wanted


def connections_per_worker(open_files: int) -> int:
    """Connections a worker may hold open: never so many that accept() fails for lack of
    file descriptors (granian would then spin on the failing accept)."""
    return max(64, min(MAX_CONNECTIONS_PER_WORKER, open_files - RESERVED_FILES))


def server_command(
    server: str,
    host: str,
    port: int,
    workers: int,
    threads: int,
    *,
    header_timeout: float = 10.0,
    open_files: int = 1024,
) -> list[str]:
    """The command line that runs the app under `server`; each worker calls the factory
    itself, so each opens its own pool after the fork."""
    python = sys.executable
    if server == "granian":
        return [
            python, "-m", "cruddur.granian_main", "--interface", "wsgi", "--factory", "--no-ws",
            "--host", host, "--port", str(port),
            "--workers", str(workers), "--blocking-threads", str(threads),
            "--http", "1",
            "--http1-header-read-timeout", str(round(header_timeout * 1000)),
            "--http1-buffer-size", str(HTTP1_BUFFER_SIZE),
            "--backlog", str(LISTEN_BACKLOG),
            "--backpressure", str(connections_per_worker(open_files)),
            "--workers-kill-timeout", str(WORKERS_KILL_TIMEOUT),
            "--respawn-failed-workers",
            GRANIAN_FACTORY,
        ]  # fmt: skip
    return [
        python, "-m", "cruddur.gunicorn_main",
        "--bind", f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "--workers", str(workers), "--threads", str(threads),
        "--worker-class", "gthread" if threads > 1 else "sync",
        "--graceful-timeout", "10", "--timeout", "30",
        *_no_control_socket(),
        "--config", GUNICORN_CONFIG,
        GUNICORN_FACTORY,
    ]  # fmt: skip


def _no_control_socket() -> list[str]:
    """gunicorn 25 and later listen on a control socket, by default one per user
    (~/.gunicorn/gunicorn.ctl): a second server took it over from the first, so gunicornc
    reached the wrong one, and a folder was made outside the checkout. Cruddur's servers
    are stopped by signals; none is opened."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major = int(version("gunicorn").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return []
    return ["--no-control-socket"] if major >= 25 else []
