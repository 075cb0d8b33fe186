"""Idle and slow sockets against the API: does a normal client still get its feed?

For each server set-up, round after round, interleaved:
  1. the server on a seeded database (cruddur_bench_flood, rebuilt each run);
  2. an attacker process (this script with --attack) holding --idle sockets that connect
     and never send a byte, and --slow sockets that send a request's headers a byte
     every --byte-every seconds; each socket the server closes is opened again;
  3. once the attacker has opened them all, a normal client: GET /api/activities/home
     on a new connection every 50 ms for --duration seconds, each with a 2 s timeout.
Then, per set-up (medians over the rounds): the share of the client's requests answered
200, their p50 and p99 (a request without an answer counts as 2 s), and how long the
server let idle and slow sockets live: the longest-lived socket it closed, and the
oldest one still open at the end.

Set-ups:
  before  granian as `cruddur serve` ran it on 54ec89e: HTTP auto, granian's own
          backpressure (backlog / workers = 512 connections a worker), its 30 s header
          timeout
  after   `cruddur serve` as it is now (README, "Serving")
  quiet   `cruddur serve` as it is now, with no attacking sockets: what the machine gives
          the client at that moment anyway
All with 2 workers of 4 threads. The attacker, the client, the server and PostgreSQL
share the machine's cores; compare the set-ups side by side, not with other machines.

Usage: .venv/bin/python bench/flood.py [--idle 2000] [--slow 2000] [--duration 15]
       [--rounds 2] [--byte-every 1]
The database server is CRUDDUR_BENCH_URL's when set, else the embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import http.client
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from loads import load_options
from stage import CRUDDUR, bench_database, drop_database, free_port, fresh_database, launch, stop

from cruddur.ops import loading

CLIENT_TIMEOUT = 2.0  # seconds
CLIENT_PAUSE = 0.05  # seconds between the normal client's requests
SLOW_REQUEST = (
    b"GET /api/activities/home HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n"
    b"Accept: application/json\r\nX-Padding: " + b"x" * 64 + b"\r\n\r\n"
)


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# -- the attacker (a process of its own, so its work does not stall the client) ---------


class Sockets:
    def __init__(self) -> None:
        self.open = 0
        self.opened_at: dict[int, float] = {}
        self.lifetimes: list[float] = []  # of the sockets the server closed
        self.connect_errors = 0


async def _connect(port: int, stats: Sockets, stop: asyncio.Event):
    while not stop.is_set():
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats.connect_errors += 1
            await asyncio.sleep(0.2)
    return None


async def _hold(port: int, stats: Sockets, stop: asyncio.Event, byte_every: float | None):
    """One attacking socket, again and again: idle (byte_every None) or slow."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        pair = await _connect(port, stats, stop)
        if pair is None:
            return
        reader, writer = pair
        opened = loop.time()
        key = id(writer)
        stats.open += 1
        stats.opened_at[key] = opened
        closed = asyncio.ensure_future(reader.read(1))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            sent = 0
            while not closed.done() and not stop.is_set():
                if byte_every is not None and sent < len(SLOW_REQUEST):
                    writer.write(SLOW_REQUEST[sent : sent + 1])
                    sent += 1
                wait = byte_every if byte_every is not None else None
                await asyncio.wait({closed, stopping}, timeout=wait, return_when="FIRST_COMPLETED")
            if closed.done():
                stats.lifetimes.append(loop.time() - opened)
        except OSError:
            stats.lifetimes.append(loop.time() - opened)
        finally:
            closed.cancel()
            stopping.cancel()
            stats.open -= 1
            del stats.opened_at[key]
            writer.close()


async def attack(port: int, idle: int, slow: int, byte_every: float) -> None:
    """Open the sockets in batches, say "ready" on stdout, hold them until stdin closes,
    then print what happened as JSON."""
    stop = asyncio.Event()
    stats = {"idle": Sockets(), "slow": Sockets()}
    tasks = []
    for n in range(max(idle, slow)):
        if n < idle:
            tasks.append(asyncio.ensure_future(_hold(port, stats["idle"], stop, None)))
        if n < slow:
            tasks.append(asyncio.ensure_future(_hold(port, stats["slow"], stop, byte_every)))
        if n % 100 == 99:
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    print(json.dumps({kind: s.open for kind, s in stats.items()}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes it
    now = loop.time()
    report = {
        kind: {
            "open": s.open,
            "closed": len(s.lifetimes),
            "longest_closed": max(s.lifetimes, default=0.0),
            "oldest_open": max((now - t for t in s.opened_at.values()), default=0.0),
            "connect_errors": s.connect_errors,
        }
        for kind, s in stats.items()
    }
    stop.set()
    if tasks:
        await asyncio.wait(tasks, timeout=5)
    print(json.dumps(report), flush=True)


# -- the bench ------------------------------------------------------------------------


def build_database() -> str:
    url = bench_database("cruddur_bench_flood")
    atexit.register(drop_database, url)  # left behind, it was nobody's to reuse
    fresh_database(url, loading.SCHEMA, loading.SEED)
    return url


def server_command(setup: str, port: int) -> list:
    if setup == "before":
        return [
            sys.executable, "-m", "granian", "--interface", "wsgi", "--factory", "--no-ws",
            "--host", "127.0.0.1", "--port", str(port),
            "--workers", "2", "--blocking-threads", "4",
            "cruddur.api:create_worker_app",
        ]  # fmt: skip
    return [CRUDDUR, "serve", "--port", str(port), "--workers", "2", "--threads", "4"]


def start_server(setup: str, url: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "CONNECTION_URL": url}
    return launch(server_command(setup, port), env, f"http://127.0.0.1:{port}", tries=300), port


def normal_client(port: int, seconds: float) -> list[float | None]:
    """Latencies of GET /api/activities/home, each on a new connection; None: no 200."""
    results: list[float | None] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
        try:
            conn.request("GET", "/api/activities/home")
            response = conn.getresponse()
            response.read()
            results.append(time.perf_counter() - started if response.status == 200 else None)
        except OSError:
            results.append(None)
        finally:
            conn.close()
        time.sleep(CLIENT_PAUSE)
    return results


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def one_round(setup: str, url: str, args: argparse.Namespace) -> dict:
    process, port = start_server(setup, url)
    idle, slow = (0, 0) if setup == "quiet" else (args.idle, args.slow)
    attacker = subprocess.Popen(
        [sys.executable, __file__, "--attack", str(port), "--idle", str(idle),
         "--slow", str(slow), "--byte-every", str(args.byte_every)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        opened = json.loads(attacker.stdout.readline())
        results = normal_client(port, args.duration)
        attacker.stdin.close()
        report = json.loads(attacker.stdout.readline())
        attacker.wait(timeout=30)
    finally:
        if attacker.poll() is None:
            attacker.kill()
        stop(process)
    answered = [r for r in results if r is not None]
    counted = [r if r is not None else CLIENT_TIMEOUT for r in results]
    return {
        "opened": opened,
        "ok": len(answered) / len(results),
        "p50": percentile(counted, 0.50) * 1000,
        "p99": percentile(counted, 0.99) * 1000,
        "requests": len(results),
        "sockets": report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    load_options(parser, rounds=2, duration=15.0)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=2000)
    parser.add_argument("--byte-every", type=float, default=1.0)
    parser.add_argument("--setups", default="before,after,quiet")
    parser.add_argument("--attack", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    limit = raise_open_files()
    if args.attack:
        asyncio.run(attack(args.attack, args.idle, args.slow, args.byte_every))
        return
    needed = args.idle + args.slow + 100
    if limit < needed:
        raise SystemExit(f"the open-files hard limit ({limit}) is below {needed}: ulimit -Hn")
    setups = args.setups.split(",")
    print(f"load average {os.getloadavg()[0]:.1f} at the start; {args.idle} idle and "
          f"{args.slow} slow sockets, a byte every {args.byte_every:g} s")  # fmt: skip
    url = build_database()
    rounds: dict[str, list[dict]] = {setup: [] for setup in setups}
    for n in range(args.rounds):
        for setup in setups if n % 2 == 0 else reversed(setups):
            result = one_round(setup, url, args)
            rounds[setup].append(result)
            print(f"  round {n + 1} {setup}: {json.dumps(result)}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(
        "\n| set-up | feed answered | p50 ms | p99 ms | idle sockets: longest-lived closed s "
        "| oldest still open s | slow sockets: longest-lived closed s | oldest still open s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for setup, results in rounds.items():

        def median(key, results=results):
            return statistics.median(key(r) for r in results)

        def sockets(kind, figure, median=median):
            return f"{median(lambda r: r['sockets'][kind][figure]):.1f}"

        print(
            f"| {setup} | {median(lambda r: r['ok']):.1%} | {median(lambda r: r['p50']):.1f} "
            f"| {median(lambda r: r['p99']):.1f} | {sockets('idle', 'longest_closed')} "
            f"| {sockets('idle', 'oldest_open')} | {sockets('slow', 'longest_closed')} "
            f"| {sockets('slow', 'oldest_open')} |"
        )
    print()
    for one, other in (("after", "before"), ("after", "quiet")):
        if {one, other} <= set(rounds):
            ratios = [a["p99"] / b["p99"] for a, b in zip(rounds[one], rounds[other], strict=True)]
            ratio = statistics.median(ratios)
            print(f"p99 {one} / {other}, median of the rounds' ratios: {ratio:.2f}")


if __name__ == "__main__":
    main()
