"""The load tools every benchmark drives, and what they measured: wrk over HTTP, pgbench
on a SQL file, each run giving a `Load` (requests/s, p50, p99, CPU per request), and the
medians of interleaved rounds that the tables print.

Imported by the scripts beside it (bench/ is on sys.path when one of them runs).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cruddur.config import Settings
from cruddur.db import template
from cruddur.targets import embedded_server
from cruddur.urls import without_password


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # the whole machine's busy CPU time per request, from /proc/stat
    share: float = 1.0  # of a baseline's rps: the median of the rounds' ratios
    own_cpu_us: float = 0.0  # feed.py --observability: the load's own processes' CPU
    requests: int = 0  # answered in the measured run (wrk)


OPTIONS = {
    "rounds": "interleaved rounds; medians kept",
    "duration": "seconds per measurement",
    "connections": "wrk's connections (feed.py, writes.py: as many pgbench clients)",
    "workers": "the server's workers",
    "threads": "threads per worker",
    "users": "fake users the database is built with",
}


def load_options(parser: argparse.ArgumentParser, **defaults: float) -> None:
    """The options the benchmarks share (OPTIONS), each with the default and type a
    benchmark gives it: load_options(parser, rounds=3, duration=4)."""
    for name, default in defaults.items():
        parser.add_argument(f"--{name}", type=type(default), default=default, help=OPTIONS[name])


def require_wrk() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def timed(command: list, **kwargs) -> tuple[str, float]:
    """The command's output, and the machine's busy CPU seconds while it ran."""
    before = busy_seconds()
    out = subprocess.run(command, capture_output=True, text=True, check=True, **kwargs).stdout
    return out, busy_seconds() - before


# -- wrk ----------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(
    url: str,
    connections: int,
    duration: int,
    script: str | None = None,
    *,
    warm: bool = True,
    headers: tuple[str, ...] = (),
) -> Load:
    """One wrk run (after a 1 s warm-up unless warm=False); any non-2xx answer ends the
    benchmark, since its figures would not be the page's."""
    extra = ["-s", script] if script else []
    for header in headers:
        extra += ["-H", header]
    if warm:
        subprocess.run(["wrk", "-t2", f"-c{connections}", "-d1s", *extra, url], capture_output=True)
    out, cpu = timed(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", *extra, url])
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return Load(rps, p50, p99, cpu / requests * 1e6, requests=requests)


# -- pgbench ------------------------------------------------------------------------


def pgbench_binary() -> str:
    return shutil.which("pgbench") or str(
        embedded_server(Settings.from_env()).bin_dir() / "pgbench"
    )


def pgbench_target(url: str, env: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """pgbench's connection string and environment: the password goes in PGPASSWORD, not
    on the command line."""
    conninfo, password = without_password(url)
    return conninfo, {**os.environ, "PGPASSWORD": password or "", **(env or {})}


def sql_for(name: str, values: dict[str, str]) -> str:
    """A query file (db/sql/<table>/<name>.sql: `activities/home`) with its placeholders
    replaced by SQL literals, on one line, as a pgbench script wants it."""
    table, query = name.split("/")
    sql = template(table, query)
    for key, value in values.items():
        sql = sql.replace(f"%({key})s", value)
    return " ".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pgbench(url: str, sql: str, connections: int, duration: int, mode: str = "prepared") -> Load:
    """pgbench running one statement for `duration` s after a 1 s warm-up; latencies from
    its per-transaction log."""
    conninfo, env = pgbench_target(url)
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder, "bench.sql")
        script.write_text(sql + "\n")
        command = [
            pgbench_binary(), "-n", "-M", mode, "-f", str(script), "-c", str(connections),
            "-j", "2", "-l", f"--log-prefix={folder}/log", conninfo,
        ]  # fmt: skip
        subprocess.run([*command, "-T", "1"], env=env, capture_output=True, cwd=folder, check=True)
        for old in Path(folder).glob("log*"):
            old.unlink()
        out, cpu = timed([*command, "-T", str(duration)], env=env, cwd=folder)
        latencies = sorted(
            int(line.split()[2]) / 1000
            for log in Path(folder).glob("log*")
            for line in log.read_text().splitlines()
        )
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    cuts = statistics.quantiles(latencies, n=100)
    transactions = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    return Load(tps, cuts[49], cuts[98], cpu / transactions * 1e6)


# -- rounds and tables --------------------------------------------------------------


def round_ratio(loads: Sequence[Load], baseline: Sequence[Load]) -> float:
    """The median of each round's requests/s ratio: both sides of one ratio ran seconds
    apart, so a noisy moment of the machine weighs on both."""
    return statistics.median(
        load.rps / base.rps for load, base in zip(loads, baseline, strict=True)
    )


def median_load(loads: Sequence[Load], baseline: Sequence[Load]) -> Load:
    """The medians of the rounds, with the share of `baseline`'s requests/s."""
    return Load(
        statistics.median(load.rps for load in loads),
        statistics.median(load.p50_ms for load in loads),
        statistics.median(load.p99_ms for load in loads),
        statistics.median(load.cpu_us for load in loads),
        round_ratio(loads, baseline),
    )


def print_table(headers: Sequence[str], align: str, rows: Iterable[Sequence[object]]) -> None:
    """A Markdown table, as the README quotes them: align has one letter a column, l or r."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" if a == "l" else "---:" for a in align) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
