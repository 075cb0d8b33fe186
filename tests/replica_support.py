"""A real primary and streaming replica of the test's own, for the read-routing tests and
bench/replica.py.

The primary is the project's embedded server in a scratch folder (a cluster of its own,
on a free port); the replica is `pg_basebackup -R` of it, started with the same binaries
on another free port. Lag is made the ways PostgreSQL offers: `recovery_min_apply_delay`
and `pg_wal_replay_pause()`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg
from helpers import as_postgres_user, free_port
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cruddur.db import Db
from cruddur.embedded import APP_DATABASE, EmbeddedPostgres
from cruddur.ops import loading
from cruddur.urls import parse


class ReplicaPair:
    """A primary with the schema and seed, and a streaming replica of it."""

    def __init__(self, home: Path) -> None:
        self.primary = EmbeddedPostgres(home)
        self.replica_port = 0

    # -- set up and tear down ---------------------------------------------------------

    def create(self) -> ReplicaPair:
        self.primary.start()
        with psycopg.connect(self.primary.url("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(APP_DATABASE)))
            # WAL kept for a replica a test cut off for a while (no slot): a checkpoint
            # meanwhile (another replica's base backup) removed the segment it needed,
            # and it never caught up again ("requested WAL segment … has already been
            # removed"), failing the tests after it.
            admin.execute("ALTER SYSTEM SET wal_keep_size = '256MB'")
            admin.execute("SELECT pg_reload_conf()")
        with Db(self.primary_url) as db:
            loading.load(db, loading.SCHEMA)
            loading.load(db, loading.SEED)
        password = parse(self.primary_url)["password"]
        port = parse(self.primary_url)["port"]
        if self.replica_dir.exists():
            shutil.rmtree(self.replica_dir)
        self._run(
            "pg_basebackup", f"--pgdata={self.replica_dir}", "--write-recovery-conf",
            "--checkpoint=fast", "--wal-method=stream", "--host=127.0.0.1", f"--port={port}",
            "--username=postgres", env={"PGPASSWORD": password},
        )  # fmt: skip
        self.replica_port = free_port()
        self.start_replica()
        return self

    def another_replica(
        self, name: str = "replica2", host: str = "127.0.0.1", port: int = 0
    ) -> ExtraReplica:
        """Another streaming replica of the primary, started (remove it after use); on
        `host` (a loopback address of its own lets two share a port, as behind one
        PgBouncer host list) and `port` (0: a free one). The primary then commits a
        transaction for it to replay: until a replica has replayed one since it started,
        how far behind it is cannot be told, and the API keeps reads off it (a test
        waiting for it to be used timed out when nothing else happened to commit)."""
        made = self.from_backup(name, standby=True, host=host, port=port)
        with psycopg.connect(self.primary_url, autocommit=True) as primary:
            primary.execute("SELECT txid_current()")  # an xid, so a commit record
        return made

    def from_backup(
        self,
        name: str,
        source_url: str | None = None,
        *,
        standby: bool,
        host: str = "127.0.0.1",
        port: int = 0,
        start: bool = True,
    ) -> ExtraReplica:
        """A server made from a base backup of the primary (or of the server at
        `source_url`) taken now: a streaming replica of it (`standby`), else a primary of
        its own, as a primary restored from that backup is. Started on `host` and `port`
        (0: a free one) unless not `start` (a backup kept to restore from later). Remove it
        after use."""
        extra = ExtraReplica(self, self.primary.cluster_dir / name, port or free_port(), host)
        extra.restore_from(source_url or self.primary_url, standby=standby)
        if start:
            extra.start()
        return extra

    def remove(self) -> None:
        self.stop_replica("immediate")
        cluster_dir = self.primary.cluster_dir
        self.primary.stop()
        shutil.rmtree(self.replica_dir, ignore_errors=True)
        shutil.rmtree(cluster_dir / "data", ignore_errors=True)

    # -- where -----------------------------------------------------------------------------

    @property
    def replica_dir(self) -> Path:
        return self.primary.cluster_dir / "replica"

    @property
    def primary_url(self) -> str:
        return self.primary.url()

    @property
    def replica_url(self) -> str:
        return make_conninfo(self.primary_url, port=str(self.replica_port))

    # -- the replica's life ------------------------------------------------------------------

    def _run(self, program: str, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [str(self.primary.bin_dir() / program), *args],
            capture_output=True,
            text=True,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LC_ALL": "C.UTF-8",
                **(env or {}),
            },
            check=False,
            timeout=120,
            **as_postgres_user(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stderr or done.stdout}")
        return done.stdout

    def start_replica(self) -> None:
        self._run(
            "pg_ctl", f"--pgdata={self.replica_dir}", "start", "--wait", "--timeout=60",
            f"--log={self.replica_dir / 'replica.log'}", f"--options=-p {self.replica_port}",
        )  # fmt: skip
        self.wait_accepting(self.replica_url)

    def start_primary(self) -> None:
        """Start the primary again after `primary.stop()`. Its port may have been taken
        while it was down, and it then starts on another (EmbeddedPostgres moves): the
        replica is told, else it would wait for ever on the old port, and would even look
        caught up until the primary wrote again."""
        self.primary.start()
        if self.primary.moved_from is not None:
            self.follow_primary()

    def follow_primary(self) -> None:
        """Point the replica's WAL receiver at the primary's port now (a reload restarts
        the receiver)."""
        with psycopg.connect(self.replica_url, autocommit=True) as conn:
            (conninfo,) = conn.execute("SHOW primary_conninfo").fetchone()
            moved = make_conninfo(conninfo, port=str(parse(self.primary_url)["port"]))
            conn.execute(
                sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(moved))
            )
            conn.execute("SELECT pg_reload_conf()")

    def freeze_replica(self, frozen: bool) -> None:
        """SIGSTOP (or SIGCONT) the replica's server and every process it started: a
        server that still accepts bytes on its sockets (the kernel does) but never answers."""
        _freeze(self.replica_dir, frozen)

    def freeze_primary(self, frozen: bool) -> None:
        """freeze_replica's, for the primary (behind PgBouncer, one black-holed looks so)."""
        _freeze(self.primary.data_dir, frozen)

    def stop_replica(self, mode: str = "fast") -> None:
        subprocess.run(
            [str(self.primary.bin_dir() / "pg_ctl"), f"--pgdata={self.replica_dir}",
             "stop", "--wait", f"--mode={mode}"],
            capture_output=True, check=False, timeout=60, **as_postgres_user(),
        )  # fmt: skip

    def set_apply_delay(self, milliseconds: int) -> None:
        """Replay each transaction no sooner than this after the primary committed it."""
        with psycopg.connect(self.replica_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET recovery_min_apply_delay = {}").format(
                    sql.Literal(f"{milliseconds}ms")
                )
            )
            conn.execute("SELECT pg_reload_conf()")

    def pause_replay(self, paused: bool) -> None:
        with psycopg.connect(self.replica_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()"
            )

    def wait_caught_up(
        self, timeout: float = 30, replica_url: str | None = None, primary_url: str | None = None
    ) -> None:
        """Until the replica (or the one at `replica_url`) has replayed all the primary (or
        the one at `primary_url`) has written."""
        with psycopg.connect(primary_url or self.primary_url, autocommit=True) as primary:
            target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(replica_url or self.replica_url, autocommit=True) as replica:
            while not replica.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
            ).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the replica did not catch up to {target}: "
                        + self.describe_replica(replica, log=replica_url is None)
                    )
                time.sleep(0.05)

    def describe_replica(self, replica: psycopg.Connection, *, log: bool) -> str:
        """What a replica that does not catch up says of itself (and the pair's replica,
        its log's last lines): enough to tell paused, delayed, cut off and broken apart."""
        row = replica.execute(
            "SELECT pg_is_in_recovery(), pg_get_wal_replay_pause_state(),"
            " pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(),"
            " current_setting('recovery_min_apply_delay'),"
            " (SELECT status FROM pg_stat_wal_receiver)"
        ).fetchone()
        names = ("in recovery", "replay", "received", "replayed", "apply delay", "receiver")
        said = ", ".join(f"{name} {value}" for name, value in zip(names, row, strict=True))
        if log and (self.replica_dir / "replica.log").exists():
            lines = (self.replica_dir / "replica.log").read_text(errors="replace").splitlines()
            said += "\nits log ends:\n" + "\n".join(lines[-30:])
        return said

    @staticmethod
    def wait_accepting(url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _freeze(data_dir: Path, frozen: bool) -> None:
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    for pid in [postmaster, *_children(postmaster)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def activity_scans(url: str) -> int:
    """Scans of `activities` in `url`'s server so far (pg_stat_user_tables, local to each
    server, a replica's too), as counted once every session that ran them has ended.
    Only reads of cruds scan it: not the health checks, not the replica's watcher."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT seq_scan + COALESCE(idx_scan, 0) FROM pg_stat_user_tables"
            " WHERE relname = 'activities'"
        ).fetchone()[0]


class ExtraReplica:
    """Another server made from a base backup of a ReplicaPair's primary, or of another
    server (ReplicaPair.another_replica, ReplicaPair.from_backup)."""

    def __init__(self, pair: ReplicaPair, data_dir: Path, port: int, host: str) -> None:
        self.pair, self.data_dir, self.port, self.host = pair, data_dir, port, host

    @property
    def url(self) -> str:
        return make_conninfo(self.pair.primary_url, host=self.host, port=str(self.port))

    def restore_from(self, source_url: str, *, standby: bool) -> None:
        """Its data folder made anew: a base backup of the server at `source_url`, as a
        streaming replica of it (`standby`) or a primary of its own. Stopped first."""
        self.stop()
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        params = parse(source_url)
        self.pair._run(
            "pg_basebackup", f"--pgdata={self.data_dir}", "--checkpoint=fast",
            "--wal-method=stream", "--host=127.0.0.1", f"--port={params['port']}",
            "--username=postgres", *(["--write-recovery-conf"] if standby else []),
            env={"PGPASSWORD": params["password"]},
        )  # fmt: skip

    def start(self) -> None:
        self.pair._run(
            "pg_ctl", f"--pgdata={self.data_dir}", "start", "--wait", "--timeout=60",
            f"--log={self.data_dir / 'server.log'}",
            f"--options=-p {self.port} -c listen_addresses={self.host}"
            " -c unix_socket_directories=''",
        )  # fmt: skip
        self.pair.wait_accepting(self.url)

    def stop(self, mode: str = "fast") -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        subprocess.run(
            [str(self.pair.primary.bin_dir() / "pg_ctl"), f"--pgdata={self.data_dir}",
             "stop", "--wait", f"--mode={mode}"],
            capture_output=True, check=False, timeout=60, **as_postgres_user(),
        )  # fmt: skip

    def set_apply_delay(self, milliseconds: int) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET recovery_min_apply_delay = {}").format(
                    sql.Literal(f"{milliseconds}ms")
                )
            )
            conn.execute("SELECT pg_reload_conf()")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
