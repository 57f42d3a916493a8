"""Queue guarantees across real processes on the local PostgreSQL (and SQLite for the crash)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from xraygate.core import db
from xraygate.core.models import JobState, utcnow
from xraygate.core.queue import JobQueue

WORKER = Path(__file__).with_name("worker_proc.py")
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _fill(url: str, n: int) -> JobQueue:
    db.upgrade(url)
    queue = JobQueue(db.get_engine(url), lease_seconds=30)
    with db.write_session(queue.engine) as session:
        for i in range(n):
            queue.enqueue(session, "work", f"job-{i}")
    return queue


def _spawn(url: str, mode: str, out: Path, lease: float = 30) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), url, mode, str(out), str(lease)])


def test_two_worker_processes_never_claim_the_same_job(pg_url: str, tmp_path: Path) -> None:
    queue = _fill(pg_url, 300)
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    procs = [_spawn(pg_url, "drain", out) for out in outs]
    for proc in procs:
        assert proc.wait(timeout=240) == 0
    claimed = [out.read_text().split() for out in outs]
    assert claimed[0] and claimed[1], "both processes must have worked"
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 300
    assert queue.counts()[JobState.DONE] == 300


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkilled_worker_job_is_reclaimed_after_lease(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    queue = _fill(url, 1)
    out = tmp_path / "hang.txt"
    proc = _spawn(url, "hang", out, lease=30.0)
    deadline = time.monotonic() + 240  # generous: a loaded 2-core machine starts Python slowly
    while not (out.exists() and out.read_text().strip()):
        assert proc.poll() is None, "the worker process exited"
        assert time.monotonic() < deadline, "worker never claimed the job"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert queue.claim("rescuer") is None, "the lease is still held right after the kill"
    # The rescuer looks 31 s ahead instead of sleeping: no assertion here depends on timing.
    later = JobQueue(queue.engine, lease_seconds=30, clock=lambda: utcnow() + timedelta(seconds=31))
    job = later.claim("rescuer")
    assert job is not None and job.attempts == 2
    with db.write_session(later.engine) as session:
        later.complete(session, job)
    assert queue.counts()[JobState.DONE] == 1
