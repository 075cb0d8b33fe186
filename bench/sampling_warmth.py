"""What a sampled home-feed request costs, by how often sampled requests come: every
request, every 10th, 10 in a row of every 100, or none, on one traced server.

One `cruddur serve` (granian, 2 workers of 1 thread, the feed cache off, traces to a
local OTLP/HTTP receiver, OTEL_TRACES_SAMPLER=parentbased_traceidratio). Every request
wrk sends carries a W3C traceparent, and its sampled flag alone decides whether the
request is traced (parent-based sampling follows the caller), so the four loads differ
only in which requests are traced, not in the server. Rounds are interleaved, each in a
different order. For each load it reads, from the kernel's counters for those processes
only, the CPU per request of the service's processes, of the PostgreSQL backends serving
them and of wrk; "a sampled request's extra" is (load - none) / the share sampled, in
the service's processes and in all three.

bench/telemetry_instructions.py counts the same in Python's instructions, where a
tenth sampled costs what 0.9 unsampled and 0.1 sampled requests do; here, in time, it
shows whether a sampled request costs more when sampled requests are rarer.

Usage: .venv/bin/python bench/sampling_warmth.py [--rounds 4] [--duration 4]
Needs wrk (Debian: apt-get install wrk). The server is CRUDDUR_BENCH_URL's when set,
else the embedded one.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from feed import backend_pids, tree_cpu_seconds
from loads import load_options, print_table, require_wrk, wrk
from stage import BENCH_DIR, build, server_url, start_service, stop

from cruddur.urls import with_database

sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
from otlp_receiver import OtlpReceiver

# name: (period, sampled at the start of each period), per wrk thread's requests
PATTERNS = {
    "none sampled": (1, 0),
    "every 10th": (10, 1),
    "10 in a row of 100": (100, 10),
    "all sampled": (1, 1),
}

# Each request's own trace id (its counter in the last 8 hex digits), the flag by pattern.
LUA = """
local n = 0
request = function()
  n = n + 1
  local flag = "00"
  if n % {period} < {sampled} then flag = "01" end
  return wrk.format(nil, nil, {{["traceparent"] = string.format(
    "00-4bf92f3577b34da6a3ce929d%08x-00f067aa0ba902b7-%s", n % 4294967296, flag)}})
end
"""


def measure(url: str, script: str, connections: int, duration: int, pid: int, db_url: str):
    """(requests/s, CPU µs a request of the service, of its backends, of wrk)."""
    subprocess.run(["wrk", "-t2", f"-c{connections}", "-d1s", "-s", script, url],
                   capture_output=True)  # fmt: skip
    backends = backend_pids(db_url)
    service, database = tree_cpu_seconds(pid), sum(tree_cpu_seconds(p) for p in backends)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = wrk(url, connections, duration, script, warm=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    service = tree_cpu_seconds(pid) - service
    database = sum(tree_cpu_seconds(p) for p in backends) - database
    load_tool = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    per = 1e6 / load.requests
    return load.rps, service * per, database * per, load_tool * per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    load_options(parser, rounds=4, duration=4, connections=8, workers=2, threads=1, users=1000)
    args = parser.parse_args()
    require_wrk()
    url = with_database(server_url(), "cruddur_bench_feed_1000")
    build(url, 1000, args.users)
    sink = OtlpReceiver(decode=False)
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }
    runs: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in PATTERNS}
    with tempfile.TemporaryDirectory(prefix="cruddur-warmth-") as folder:
        scripts = {}
        for name, (period, sampled) in PATTERNS.items():
            scripts[name] = str(Path(folder, f"{period}-{sampled}.lua"))
            Path(scripts[name]).write_text(LUA.format(period=period, sampled=sampled))
        process, base = start_service(url, "granian-uncached", args.workers, args.threads, env=env)
        try:
            names = list(PATTERNS)
            for round_number in range(1, args.rounds + 1):
                shift = (round_number - 1) % len(names)
                for name in names[shift:] + names[:shift]:
                    runs[name].append(measure(
                        f"{base}/api/activities/home", scripts[name], args.connections,
                        args.duration, process.pid, url,
                    ))  # fmt: skip
                print(f"  round {round_number}: " + ", ".join(
                    f"{name} {r[-1][0]:,.0f}/s {r[-1][1]:.0f} µs" for name, r in runs.items()
                ))  # fmt: skip
        finally:
            stop(process, timeout=30)
            sink.close()
    medians = {
        name: [statistics.median(run[i] for run in r) for i in range(4)] for name, r in runs.items()
    }
    none = medians["none sampled"]
    print()
    print(
        f"GET /api/activities/home (20 cruds), granian, {args.workers} workers x "
        f"{args.threads} threads, {args.connections} connections; median of {args.rounds} "
        f"interleaved rounds of {args.duration} s; {sink.exports:,} OTLP exports received"
    )

    def extra(name: str, column: int) -> str:
        period, sampled = PATTERNS[name]
        if not sampled:
            return ""
        share = sampled / period
        own = (medians[name][column] - none[column]) / share
        return f"{own:,.0f}"

    def whole(values: list[float]) -> float:
        return values[1] + values[2] + values[3]

    rows = []
    for name, values in medians.items():
        period, sampled = PATTERNS[name]
        share = sampled / period
        all_extra = f"{(whole(values) - whole(none)) / share:,.0f}" if sampled else ""
        rows.append([
            name, f"{share:.0%}", f"{values[0]:,.0f}", f"{values[1]:,.0f}", f"{values[2]:,.0f}",
            f"{values[3]:,.0f}", extra(name, 1), all_extra,
        ])  # fmt: skip
    print_table(
        ["load", "sampled", "req/s", "service µs/req", "database µs/req", "wrk µs/req",
         "a sampled request's extra, service µs", "its extra, all three µs"],
        "lrrrrrrr",
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()
