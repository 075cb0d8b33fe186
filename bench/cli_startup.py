"""How long the `cruddur` command takes to start: this checkout against a baseline revision.

Each command runs as a user runs it, `.venv/bin/cruddur …` in a new process from an empty
folder (no .env), once with this checkout's src on PYTHONPATH and once with the
baseline's (`git archive REV src`), each copied to a temporary folder without bytecode,
in interleaved rounds whose order alternates. Per command: the median wall time and the
median CPU time (user + system, of the process and what it waited for, from os.wait4),
and the ratios new / old.
`db status` runs only with a database: --url, else CRUDDUR_BENCH_URL or CONNECTION_URL.

--bytecode compiles both trees first and lets Python use the .pyc files, as an installed
package does; without it the environment decides (PYTHONDONTWRITEBYTECODE=1 makes every
start compile cruddur's own modules from source).

Usage: .venv/bin/python bench/cli_startup.py [--rounds 10] [--baseline ce892e0]
       [--url postgresql://…] [--bytecode]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loads import print_table

ROOT = Path(__file__).resolve().parents[1]
CRUDDUR = Path(sys.executable).parent / "cruddur"
BASELINE = "ce892e0"  # main before the CLI imported each verb's needs on use

COMMANDS = [
    ["--help"],
    ["db", "--help"],
    ["db", "status", "--help"],
    ["rds", "--help"],
    ["serve", "--help"],
]


def export(revision: str, folder: Path) -> Path:
    """The revision's src/ under `folder`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"


def run_once(command: list[str], src: Path, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one `cruddur COMMAND` run with `src` first on the path."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(CRUDDUR), *command],
        env={**env, "PYTHONPATH": str(src)},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if process.returncode != 0:
        raise SystemExit(f"cruddur {' '.join(command)} ({src}) exited {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds; medians kept")
    parser.add_argument("--baseline", default=BASELINE, help="the revision to compare with")
    parser.add_argument(
        "--url",
        default=os.environ.get("CRUDDUR_BENCH_URL") or os.environ.get("CONNECTION_URL"),
        help="the database `db status` asks [CRUDDUR_BENCH_URL, else CONNECTION_URL]",
    )
    parser.add_argument(
        "--bytecode", action="store_true", help="compile both trees and use their .pyc files"
    )
    args = parser.parse_args()
    commands = COMMANDS + ([["db", "status"]] if args.url else [])
    unset = ("PYTHONPATH", "CONNECTION_URL", "PROD_CONNECTION_URL")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["NO_COLOR"] = "1"
    if args.url:
        env["CONNECTION_URL"] = args.url
    with tempfile.TemporaryDirectory(prefix="cruddur-bench-cli-") as tmp:
        folder = Path(tmp)
        (folder / "old").mkdir()
        (folder / "cwd").mkdir()
        new = shutil.copytree(
            ROOT / "src", folder / "new" / "src", ignore=shutil.ignore_patterns("__pycache__")
        )
        trees = {"new": new, "old": export(args.baseline, folder / "old")}
        if args.bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            for tree in trees.values():
                compileall.compile_dir(tree, quiet=1)
        for tree in trees.values():  # a first run of each, unmeasured: caches warm
            for command in commands:
                run_once(command, tree, env, folder / "cwd")
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        load_before = os.getloadavg()
        for round_ in range(args.rounds):
            for command in commands:
                order = ("new", "old") if round_ % 2 == 0 else ("old", "new")
                for which in order:
                    taken = run_once(command, trees[which], env, folder / "cwd")
                    samples.setdefault((" ".join(command), which), []).append(taken)
        load_after = os.getloadavg()

    def median_ms(name: str, which: str, index: int) -> float:
        return statistics.median(sample[index] for sample in samples[name, which]) * 1000

    if args.bytecode:
        bytecode = "compiled first (.pyc)"
    elif env.get("PYTHONDONTWRITEBYTECODE"):
        bytecode = "none: PYTHONDONTWRITEBYTECODE is set, cruddur's modules compile at each start"
    else:
        bytecode = "as Python caches it"
    print(
        f"{args.rounds} rounds, baseline {args.baseline}; bytecode {bytecode}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    rows = []
    for command in commands:
        name = " ".join(command)
        wall = median_ms(name, "new", 0), median_ms(name, "old", 0)
        cpu = median_ms(name, "new", 1), median_ms(name, "old", 1)
        rows.append([
            f"`cruddur {name}`",
            f"{wall[1]:.0f}", f"{wall[0]:.0f}", f"{wall[0] / wall[1]:.2f}",
            f"{cpu[1]:.0f}", f"{cpu[0]:.0f}", f"{cpu[0] / cpu[1]:.2f}",
        ])  # fmt: skip
    columns = ["command", "wall ms, old", "new", "new/old", "CPU ms, old", "new", "new/old"]
    print_table(columns, "lrrrrrr", rows)


if __name__ == "__main__":
    main()
