"""``python -m tests.cluster`` (``make cluster``): the multi-process cluster under faults."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from tests.cluster.cluster import ClusterConfig
from tests.cluster.harness import Run, RunOptions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    p.add_argument("--instances", type=int, default=1000, help="corpus size (default 1000)")
    p.add_argument("--seed", type=int, default=1, help="corpus UIDs, study sizes and faults")
    p.add_argument("--modalities", type=int, default=6, help="storescu senders at once")
    p.add_argument("--faults", choices=["full", "short", "none"], default="full")
    p.add_argument("--ehr-outage", type=float, default=20.0, help="MLLP down / FHIR 503 seconds")
    p.add_argument("--scps", type=int, default=2)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--gateways", type=int, default=2)
    p.add_argument("--drain-timeout", type=float, default=300.0)
    p.add_argument("--shrink", type=int, default=4, help="RG1 pixels area-averaged by this")
    p.add_argument("--workdir", type=Path, default=None, help="where the run's files go")
    args = p.parse_args(argv)
    options = RunOptions(
        instances=args.instances,
        seed=args.seed,
        modalities=args.modalities,
        faults=args.faults,
        ehr_outage=args.ehr_outage,
        drain_timeout=args.drain_timeout,
        shrink=args.shrink,
        config=ClusterConfig(scps=args.scps, workers=args.workers, gateways=args.gateways),
        workdir=args.workdir,
    )
    # SIGTERM (a CI timeout, `kill`) ends the run like Ctrl-C: the harness's finally blocks
    # stop every process it started instead of leaving them running
    signal.signal(signal.SIGTERM, _interrupt)
    start = time.monotonic()
    verdict = Run(options).execute()
    print(f"cluster run, seed {args.seed}, {time.monotonic() - start:.0f} s in all")
    print(verdict.render(), flush=True)
    return 0 if verdict.ok else 1


def _interrupt(signum: int, _frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
