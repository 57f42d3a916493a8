"""SIGTERM to `xraygate worker`: the job in hand is finished, or (past the grace period) released
with the patient's delivery stream, so that another worker takes it at once instead of waiting
for the lease to expire. On PostgreSQL, the database of split deployments."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import col

from tests.results_factory import enqueue_emit, make_result
from xraygate.core import db
from xraygate.core.config import Settings, get_settings
from xraygate.core.models import DeliveryStream, Job, JobState
from xraygate.core.queue import JobQueue
from xraygate.core.worker import Worker
from xraygate.service import stop_workers

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_settings(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("XRAYGATE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("XRAYGATE_DATABASE_URL", pg_url)
    get_settings.cache_clear()
    settings = get_settings()
    db.upgrade(settings.resolved_database_url)
    yield settings
    get_settings.cache_clear()


class SilentPeer:
    """An MLLP peer that takes the message and never answers (an EHR engine that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if conn.recv(65536):
                self.received.set()

    def close(self) -> None:
        for conn in [*self.conns, self.sock]:
            conn.close()


def _job(engine: object, kind: str) -> Job:
    with db.read_session(engine) as session:  # type: ignore[arg-type]
        return session.scalars(select(Job).where(col(Job.kind) == kind)).one()


@pytest.mark.slow
def test_sigterm_releases_a_send_in_progress(pg_settings: Settings) -> None:
    engine = db.get_engine(pg_settings.resolved_database_url)
    queue = JobQueue(engine)
    made = make_result(engine)
    enqueue_emit(engine, queue, "emit-hl7", made)
    peer = SilentPeer()
    env = {
        **os.environ,
        "XRAYGATE_DATA_DIR": str(pg_settings.data_dir),
        "XRAYGATE_DATABASE_URL": pg_settings.resolved_database_url,
        "XRAYGATE_HL7_HOST": "127.0.0.1",
        "XRAYGATE_HL7_PORT": str(peer.port),
        "XRAYGATE_HL7_TIMEOUT": "120",
        "XRAYGATE_QUEUE_LEASE_SECONDS": "300",
        "XRAYGATE_SHUTDOWN_GRACE_SECONDS": "1",
        "XRAYGATE_QUEUE_POLL_SECONDS": "0.05",
    }
    proc = subprocess.Popen([sys.executable, "-m", "xraygate", "worker"], env=env)
    try:
        assert peer.received.wait(120), "the worker never sent the ORU"
        sending = _job(engine, "send-hl7")
        assert sending.state == JobState.RUNNING and sending.attempts == 1
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 15, "the worker waited for the ACK timeout"
    finally:
        if proc.poll() is None:
            proc.kill()
        peer.close()
    released = _job(engine, "send-hl7")
    assert released.state == JobState.PENDING
    assert released.attempts == 0, "a released job's attempt is not counted"
    assert released.locked_by is None and released.lease_expires_at is None
    with db.read_session(engine) as session:
        stream = session.scalars(select(DeliveryStream)).one()
    assert stream.locked_by is None, "the patient's delivery stream is still leased"
    assert _job(engine, "emit-hl7").state == JobState.DONE


def test_a_job_finishing_within_the_grace_period_is_completed_not_released(
    pg_settings: Settings,
) -> None:
    engine = db.get_engine(pg_settings.resolved_database_url)
    queue = JobQueue(engine)
    with db.write_session(engine) as session:
        queue.enqueue(session, "slow", "a")
        queue.enqueue(session, "slow", "b")
    entered, release = threading.Event(), threading.Event()

    def slow(job: object) -> None:
        entered.set()
        release.wait(10)

    stop = threading.Event()
    worker = Worker(queue, {"slow": slow})
    thread = threading.Thread(target=worker.run, args=(stop, 0.02), daemon=True)
    thread.start()
    assert entered.wait(10)
    stop.set()
    threading.Timer(0.3, release.set).start()
    stop_workers(queue, [(worker, thread)], grace=10)
    assert not thread.is_alive()
    states = sorted(j.state for j in queue.jobs(kind="slow"))
    assert states == [JobState.DONE, JobState.PENDING], "one finished, the other never claimed"
    # past the grace period: released, claimable at once by another worker, done only once
    entered.clear()
    release.clear()
    stop2 = threading.Event()
    worker2 = Worker(queue, {"slow": slow})
    thread2 = threading.Thread(target=worker2.run, args=(stop2, 0.02), daemon=True)
    thread2.start()
    assert entered.wait(10)
    stop2.set()
    stop_workers(queue, [(worker2, thread2)], grace=0.2)
    [pending] = [j for j in queue.jobs(kind="slow") if j.state != JobState.DONE]
    assert pending.state == JobState.PENDING and pending.attempts == 0
    other = queue.claim("other-worker", ["slow"])
    assert other is not None and other.id == pending.id
    release.set()
    thread2.join(10)  # the abandoned attempt's commit loses: its lease was given back
    with db.write_session(engine) as session:
        queue.complete(session, other)
    assert [j.state for j in queue.jobs(kind="slow")] == [JobState.DONE, JobState.DONE]
