"""A PostgreSQL cluster reachable only through a path the test can black-hole.

The cluster runs in a network namespace of its own, listening on the namespace's end of
a veth pair; this side reaches it through the other end. `black_hole()` adds a blackhole
route in the namespace for this side's address: everything from here still arrives, but
nothing (no ACK, no SYN-ACK, no RST, no ICMP) comes back, as when a network partitions or
an RDS host vanishes mid-failover. `restore()` deletes the route. (No netem, iptables or
tc classifier is needed: this kernel has none of them; a route is always there.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cruddur.embedded import RunAs


def why_no_namespaces() -> str | None:
    """None when this process can make network namespaces; else why not."""
    if os.geteuid() != 0:
        return "black-holing a network path needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "black-holing a network path needs iproute2's `ip`"
    name = f"cruddur-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    subprocess.run(command, check=True, capture_output=True, text=True)


class IsolatedPath:
    """A namespace and a veth pair: this side `host_addr`, the namespace `ns_addr`."""

    def __init__(self) -> None:
        n = os.getpid() % 250 + 1
        self.netns = f"cruddur-bh-{os.getpid()}"
        self.here, self.there = f"bh{os.getpid()}h", f"bh{os.getpid()}n"
        self.host_addr, self.ns_addr = f"10.213.{n}.1", f"10.213.{n}.2"
        self.holed = False

    def create(self) -> IsolatedPath:
        _ip("netns", "add", self.netns)
        try:
            _ip("link", "set", "lo", "up", netns=self.netns)
            _ip("link", "add", self.here, "type", "veth", "peer", "name", self.there)
            _ip("link", "set", self.there, "netns", self.netns)
            _ip("addr", "add", f"{self.host_addr}/30", "dev", self.here)
            _ip("link", "set", self.here, "up")
            _ip("addr", "add", f"{self.ns_addr}/30", "dev", self.there, netns=self.netns)
            _ip("link", "set", self.there, "up", netns=self.netns)
        except BaseException:
            self.remove()
            raise
        return self

    def black_hole(self) -> None:
        _ip("route", "add", "blackhole", f"{self.host_addr}/32", netns=self.netns)
        self.holed = True

    def restore(self) -> None:
        _ip("route", "del", "blackhole", f"{self.host_addr}/32", netns=self.netns)
        self.holed = False

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.here], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


def start_in_namespace(server, path: IsolatedPath) -> str:
    """Start `server` (an EmbeddedPostgres, set up and stopped) inside `path`'s namespace,
    listening on its address only; return the app database's URL through that path."""
    run_as = RunAs.for_current_user()
    fd, hba = tempfile.mkstemp(prefix="cruddur-bh-hba-", suffix=".conf")
    with os.fdopen(fd, "w") as handle:
        handle.write(f"host all all {path.host_addr}/32 scram-sha-256\n")
    os.chmod(hba, 0o644)
    url = server.url()
    port = conninfo_to_dict(url)["port"]
    options = (
        f"-p {port} -c listen_addresses={path.ns_addr} -c unix_socket_directories='' "
        f"-c hba_file={hba}"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    command = ["ip", "netns", "exec", path.netns, "setpriv", f"--reuid={run_as.uid}"]
    command += [f"--regid={run_as.gid}", "--clear-groups", str(server.program("pg_ctl"))]
    command += [f"--pgdata={server.data_dir}", "start", "--wait", "--timeout=60"]
    command += [f"--log={server.log_file}", f"--options={options}"]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    Path(hba).unlink()  # read at start; a reload would need it again, and none is made
    assert result.returncode == 0, result.stderr + Path(server.log_file).read_text()[-2000:]
    return make_conninfo(url, host=path.ns_addr)
