"""Start-up time of the CLI: ``xraygate --help``, ``status`` and ``results`` against a bare
``python -c pass`` measured in the same run (issue 12: each under 0.5 s; lazy imports).

    .venv/bin/python bench/cli_startup.py [--runs 7] [--quick]

Prints the median wall time of each command, its ratio to the bare interpreter and the verdict
against the 0.5 s target. The data dir is a fresh temp dir, migrated once before timing (so
``status``/``results`` measure a command on an existing install, not the first migration).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.5
COMMANDS = {
    "python -c pass (peer)": [sys.executable, "-c", "pass"],
    "xraygate --help": [sys.executable, "-m", "xraygate", "--help"],
    "xraygate status": [sys.executable, "-m", "xraygate", "status"],
    "xraygate results": [sys.executable, "-m", "xraygate", "results"],
}


def _time(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 runs")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="xg-cli-bench-") as tmp:
        cwd = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("XRAYGATE_")}
        env["XRAYGATE_DATA_DIR"] = str(cwd / "var")
        subprocess.run(
            [sys.executable, "-m", "xraygate", "db", "upgrade"], env=env, cwd=cwd, check=True
        )
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(runs):  # interleaved: load changes hit every command alike
            for name, cmd in COMMANDS.items():
                times[name].append(_time(cmd, env, cwd))
    peer = statistics.median(times["python -c pass (peer)"])
    print(f"{'command':<24} {'median s':>9} {'min s':>7} {'x peer':>7}  target {TARGET_S} s")
    worst = 0.0
    for name, values in times.items():
        med = statistics.median(values)
        verdict = "" if name.endswith("(peer)") else ("met" if med < TARGET_S else "NOT met")
        if not name.endswith("(peer)"):
            worst = max(worst, med)
        print(f"{name:<24} {med:9.3f} {min(values):7.3f} {med / peer:7.1f}  {verdict}")
    print(f"runs: {runs}; load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
