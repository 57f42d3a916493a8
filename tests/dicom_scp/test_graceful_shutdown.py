"""SIGTERM to `xraygate scp` during a 50-instance association: every instance is either
acknowledged and kept, or refused with a retryable status; nothing is half-written; no new
association is accepted; the process exits on its own."""

from __future__ import annotations

import hashlib
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
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from sqlmodel import select

from tests.dicom_scp.conftest import new_ct
from xraygate.core import db
from xraygate.core.config import Settings, get_settings
from xraygate.core.models import Instance, Job
from xraygate.core.storage import store_from_settings
from xraygate.dicom_scp.status import Status

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def pg_settings(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Split deployments run on PostgreSQL."""
    monkeypatch.setenv("XRAYGATE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("XRAYGATE_DATABASE_URL", pg_url)
    monkeypatch.setenv("XRAYGATE_MIN_FREE_BYTES", "0")
    get_settings.cache_clear()
    settings = get_settings()
    db.upgrade(settings.resolved_database_url)
    yield settings
    get_settings.cache_clear()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_scp(settings: Settings, grace: float) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {
        **os.environ,
        "XRAYGATE_DATA_DIR": str(settings.data_dir),
        "XRAYGATE_DATABASE_URL": settings.resolved_database_url,
        "XRAYGATE_DICOM_HOST": "127.0.0.1",
        "XRAYGATE_DICOM_PORT": str(port),
        "XRAYGATE_MIN_FREE_BYTES": "0",
        "XRAYGATE_SHUTDOWN_GRACE_SECONDS": str(grace),
    }
    proc = subprocess.Popen([sys.executable, "-m", "xraygate", "scp"], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the SCP exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("SCP did not start listening")


def _scu() -> AE:
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    return ae


#: Refusals the client takes before it gives up on the association: the SCP aborts an
#: association still open ``closing_seconds`` (5 s) after the grace period, and 40 refused
#: instances at a loaded machine's pace (~0.14 s each) took longer than that.
_REFUSALS_SEEN = 5


@pytest.mark.parametrize(
    ("grace", "expect_refusals"),
    [(1.0, True), (30.0, False)],
    ids=["grace-over-mid-association", "association-finishes-within-grace"],
)
def test_sigterm_during_a_50_instance_association(
    pg_settings: Settings, grace: float, expect_refusals: bool
) -> None:
    proc, port = _start_scp(pg_settings, grace)
    statuses: dict[str, int] = {}
    signalled = threading.Event()
    try:
        assoc = _scu().associate("127.0.0.1", port, ae_title="XRAYGATE")
        assert assoc.is_established
        study = new_ct()
        for i in range(50):
            ds = new_ct(study.StudyInstanceUID, study.SeriesInstanceUID)
            if i == 10:
                os.kill(proc.pid, signal.SIGTERM)
                signalled.set()
                time.sleep(0.3)
                refused = _scu().associate("127.0.0.1", port, ae_title="XRAYGATE")
                assert not refused.is_established, "a stopping SCP accepted an association"
            status = assoc.send_c_store(ds)
            assert "Status" in status, f"instance {i}: no response (association lost)"
            statuses[str(ds.SOPInstanceUID)] = int(status.Status)
            if sum(s != Status.SUCCESS for s in statuses.values()) >= _REFUSALS_SEEN:
                break  # as a modality does: it sends the rest again later
            time.sleep(0.06)  # a modality's pace: the grace period ends mid-association
        assoc.release()
        assert proc.wait(timeout=grace + 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acked = {uid for uid, s in statuses.items() if s == Status.SUCCESS}
    refused = {uid: s for uid, s in statuses.items() if s != Status.SUCCESS}
    assert len(statuses) == 50 or len(statuses) - len(acked) == _REFUSALS_SEEN
    assert all(Status(s).retryable and s >> 8 == 0xA7 for s in refused.values()), refused
    assert bool(refused) == expect_refusals, (len(acked), len(refused))
    assert len(acked) >= 11
    # acknowledged == kept: indexed, stored byte-exact, one infer job; refused left no trace
    store = store_from_settings(pg_settings)
    engine = db.get_engine(pg_settings.resolved_database_url)
    with db.read_session(engine) as session:
        rows = list(session.exec(select(Instance)).all())
        jobs = list(session.exec(select(Job)).all())
    assert {r.sop_instance_uid for r in rows} == acked
    assert sorted(j.instance_uid or "" for j in jobs) == sorted(acked)
    for row in rows:
        assert hashlib.sha256(store.get_bytes(row.object_key)).hexdigest() == row.sha256
    assert set(store.list("dicom/")) == {r.object_key for r in rows}, "an unindexed object"
    assert not list(pg_settings.tmp_dir.glob("*.dcm")), "a spooled data set was left behind"
