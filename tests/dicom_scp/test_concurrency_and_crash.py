"""Parallel associations lose nothing; a killed SCP never half-indexes an instance."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydicom.uid import ComputedRadiographyImageStorage, CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from sqlmodel import select

from tests.dicom_scp.conftest import RunningScp, new_ct, sample
from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.models import Instance, Job, Study
from xraygate.core.storage import store_from_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _associate(port: int) -> object:
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context(ComputedRadiographyImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="XRAYGATE")
    assert assoc.is_established
    return assoc


def test_eight_parallel_associations_lose_nothing(scp: RunningScp) -> None:
    studies = [
        (f"1.2.826.0.1.3680043.8.498.{i}", f"1.2.826.0.1.3680043.8.499.{i}") for i in range(4)
    ]
    sent: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def association(n: int) -> None:
        try:
            assoc = _associate(scp.port)
            for i in range(50):
                study, series = studies[(n + i) % 4]
                ds = new_ct(study, series, patient=f"P{(n + i) % 4}")
                status = assoc.send_c_store(ds)  # type: ignore[attr-defined]
                assert int(status.Status) == 0
                sent[n].append(str(ds.SOPInstanceUID))
            assoc.release()  # type: ignore[attr-defined]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=association, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    expected = {uid for batch in sent for uid in batch}
    assert len(expected) == 400
    rows = scp.instances()
    assert {r.sop_instance_uid for r in rows} == expected
    jobs = scp.jobs()
    assert len(jobs) == 400 and len({j.instance_uid for j in jobs}) == 400
    with db.read_session(scp.queue.engine) as session:
        assert len(session.exec(select(Study)).all()) == 4
    for row in rows[::20]:
        assert hashlib.sha256(scp.store.get_bytes(row.object_key)).hexdigest() == row.sha256


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the SCP exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("SCP did not start listening")


def test_sigkill_mid_association_leaves_index_and_store_consistent(
    settings: Settings, tmp_path: Path
) -> None:
    """`xraygate scp` is SIGKILLed while C-STOREs stream in (big CRs and small CTs)."""
    import random

    from pydicom import dcmread

    port = _free_port()
    env = {
        **os.environ,
        "XRAYGATE_DATA_DIR": str(settings.data_dir),
        "XRAYGATE_DATABASE_URL": settings.resolved_database_url,
        "XRAYGATE_DICOM_HOST": "127.0.0.1",
        "XRAYGATE_DICOM_PORT": str(port),
        "XRAYGATE_MIN_FREE_BYTES": "0",
    }
    proc = subprocess.Popen([sys.executable, "-m", "xraygate", "scp"], env=env)
    acknowledged: list[str] = []
    sent = 0

    def killer() -> None:
        while len(acknowledged) < 10 and proc.poll() is None:
            time.sleep(0.001)
        time.sleep(random.uniform(0.0, 0.05))  # lands in a transfer, an ingest or a commit
        os.kill(proc.pid, signal.SIGKILL)

    try:
        _wait_listening(port, proc)
        assoc = _associate(port)
        big = dcmread(sample("RG1_UNCR.dcm"))
        threading.Thread(target=killer, daemon=True).start()
        for i in range(400):
            ds = big if i % 2 else new_ct()
            if i % 2:
                ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.500.{i}"
            sent += 1
            try:
                status = assoc.send_c_store(ds)  # type: ignore[attr-defined]
            except RuntimeError:  # the association is gone
                break
            if not status or "Status" not in status:
                break
            if int(status.Status) == 0:
                acknowledged.append(str(ds.SOPInstanceUID))
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert 10 <= len(acknowledged) < sent <= 400, "the kill landed mid-association"
    store = store_from_settings(settings)
    engine = db.get_engine(settings.resolved_database_url)
    with db.read_session(engine) as session:
        rows = session.exec(select(Instance)).all()
        jobs = session.exec(select(Job)).all()
    indexed = {r.sop_instance_uid for r in rows}
    assert set(acknowledged) <= indexed, "an acknowledged instance has no index row"
    assert len(indexed) <= len(acknowledged) + 1, "only the in-flight one may be unacknowledged"
    for row in rows:
        assert hashlib.sha256(store.get_bytes(row.object_key)).hexdigest() == row.sha256
    assert sorted(j.instance_uid or "" for j in jobs) == sorted(indexed), "one job per row"


def test_stale_spool_files_of_a_killed_process_are_removed(tmp_path: Path) -> None:
    from xraygate.dicom_scp.server import clean_spool

    stale, fresh, other = tmp_path / "tmpa1.dcm", tmp_path / "tmpb2.dcm", tmp_path / "keep.txt"
    for path in (stale, fresh, other):
        path.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    assert clean_spool(tmp_path, 60) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "tmpb2.dcm"]
