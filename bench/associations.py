"""Association set-up benchmark: one association per instance, as many modalities send.

Each instance of a small CT corpus is sent by its own dcmtk ``storescu`` process (one
association proposing storescu's default ~120 storage contexts, one C-STORE, release), one
after the other, to dcmtk ``storescp``, Orthanc and xraygate's SCP (one receiving process),
all started as in ``bench/ingest.py``. Prints associations/s, the server's CPU per association
(from /proc, xraygate and Orthanc; storescp forks a child per association) and the ratios.

    .venv/bin/python bench/associations.py            # 200 associations per server, 3 repeats
    .venv/bin/python bench/associations.py --count 50 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from ingest import (  # the sibling bench script's servers and corpus
    DCMTK_ENV,
    SERVERS,
    dcmtk,
    make_corpus,
)

NAMES = ("storescp", "orthanc", "xraygate-1p")


def measure(server: str, paths: list[Path], work: Path) -> tuple[float, float]:
    """(associations/s, server CPU ms per association) for one run."""
    start_server, called = SERVERS[server]
    proc, port = start_server(work)
    try:
        tree = psutil.Process(proc.pid)
        cpu0 = sum(tree.cpu_times()[:2])
        started = time.perf_counter()
        command = [dcmtk("storescu"), "-aet", "BENCH", "-aec", called, "127.0.0.1", str(port)]
        for path in paths:
            subprocess.run(
                [*command, str(path)],
                check=True,
                capture_output=True,
                env=DCMTK_ENV,
            )
        seconds = time.perf_counter() - started
        cpu = sum(tree.cpu_times()[:2]) - cpu0
    finally:
        proc.terminate()
        proc.wait(60)
    return len(paths) / seconds, cpu / len(paths) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="associations per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per server (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xg-assoc-") as tmp:
        root = Path(tmp)
        paths = make_corpus("CT_small.dcm", args.count, root / "ct")
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in NAMES}
        for i in range(args.repeats):
            for name in NAMES:
                results[name].append(measure(name, paths, root / f"run-{i}-{name}"))
        rate = {n: statistics.median(r for r, _ in results[n]) for n in NAMES}
        print(f"{args.count} associations of one CT each, median of {args.repeats}")
        header = f"{'server':<12} {'assoc/s':>8} {'CPU ms/assoc':>13}"
        print(f"{header} {'/storescp':>9} {'/orthanc':>9}")
        for name in NAMES:
            cpu = statistics.median(c for _, c in results[name])
            shown = "(forks)" if name == "storescp" else f"{cpu:.1f}"
            print(
                f"{name:<12} {rate[name]:>8.1f} {shown:>13} "
                f"{rate[name] / rate['storescp']:>9.2f} {rate[name] / rate['orthanc']:>9.2f}"
            )


if __name__ == "__main__":
    main()
