"""A worker process for the multi-process queue tests: ``python worker_proc.py URL MODE OUT``.

MODE ``drain``: run ``work`` jobs until none is left, appending each claimed job id to OUT.
MODE ``hang``: claim one job, write its id to OUT, then sleep (to be SIGKILLed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from xraygate.core.db import get_engine
from xraygate.core.queue import ClaimedJob, JobQueue
from xraygate.core.worker import Worker


def main() -> None:
    url, mode, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    queue = JobQueue(get_engine(url), lease_seconds=float(sys.argv[4]) if len(sys.argv) > 4 else 30)

    def handler(job: ClaimedJob) -> None:
        with out.open("a") as fh:
            fh.write(f"{job.id}\n")
            fh.flush()
        if mode == "hang":
            time.sleep(600)
        time.sleep(0.01)

    worker = Worker(queue, {"work": handler}, worker_id=f"proc-{out.name}")
    idle = 0
    while idle < 3:
        idle = 0 if worker.run_once() else idle + 1
        if idle:
            time.sleep(0.05)


if __name__ == "__main__":
    main()
