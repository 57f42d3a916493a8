"""Parallel associations lose nothing; a killed SCP never half-indexes an instance."""

from __future__ import annotations

import contextlib
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
from xraygate.core.dimse_scu import keep_responses
from xraygate.core.ingest import Ingestor
from xraygate.core.models import Instance, Job, Study
from xraygate.core.queue import JobQueue
from xraygate.core.storage import store_from_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _associate(port: int, dimse_timeout: float = 30.0) -> object:
    ae = AE(ae_title="MODALITY1")
    ae.dimse_timeout = dimse_timeout
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context(ComputedRadiographyImageStorage, [ExplicitVRLittleEndian])
    assoc = keep_responses(ae.associate("127.0.0.1", port, ae_title="XRAYGATE"))
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
    # The restart: an acknowledged object may still have been in the ingest journal only (the
    # indexer commits after the answer); the next start replays what the killed process left.
    restarted = Ingestor(settings, store, JobQueue.from_settings(settings))
    assert restarted.flush(60), "the journal was not replayed"
    restarted.close()
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


# --- `xraygate serve` SIGKILLed during 8 parallel associations ---------------------------------


def _serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`xraygate serve --no-http` in its own process group (its receivers included)."""
    return subprocess.Popen(
        [sys.executable, "-m", "xraygate", "serve", "--no-http"], env=env, start_new_session=True
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the service and every receiving process it spawned (the pod dies)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def _corpus(folder: Path, count: int) -> list[Path]:
    """Small synthetic chest CRs the demo model reads (4 studies per association)."""
    from tests.synthetic_cr import synthetic_cr
    from xraygate.inference.training.synthetic import dataset

    folder.mkdir()
    images, _ = dataset(8, seed=13)
    paths = []
    for i in range(count):
        study = f"1.2.826.0.1.3680043.8.497.{i // 13}"
        path = folder / f"{i:03d}.dcm"
        paths.append(synthetic_cr(path, images[i % 8], study_uid=study, patient_id=f"P{i % 7}"))
    return paths


def _send_all(port: int, batches: list[list[Path]], acknowledged: list[str]) -> None:
    """One association per batch, all at once; collects the SOP UIDs acknowledged 0x0000."""
    from pydicom import dcmread

    def association(batch: list[Path]) -> None:
        try:  # 2 cores shared with inference and OCR workers: allow slow answers
            assoc = _associate(port, dimse_timeout=120.0)
        except AssertionError:
            return  # the service is gone
        try:
            for path in batch:
                try:
                    status = assoc.send_c_store(path)  # type: ignore[attr-defined]
                except (RuntimeError, OSError):
                    return
                if not status or "Status" not in status:
                    return  # aborted: the service was killed
                if int(status.Status) == 0:
                    acknowledged.append(str(dcmread(path, stop_before_pixels=True).SOPInstanceUID))
            assoc.release()  # type: ignore[attr-defined]
        finally:
            if assoc.is_alive():  # type: ignore[attr-defined]
                assoc.abort()  # type: ignore[attr-defined]

    threads = [threading.Thread(target=association, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)


def _settled(engine: object, expected: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``expected`` instances are indexed and every ``infer`` job is done (the
    follow-up delivery jobs are not this test's subject)."""
    from xraygate.core.models import JobState

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert proc.poll() is None, "xraygate serve exited"
        with db.read_session(engine) as session:  # type: ignore[arg-type]
            count = len(session.exec(select(Instance.id)).all())
            states = [j.state for j in session.exec(select(Job).where(Job.kind == "infer")).all()]
        if count >= expected and all(s == JobState.DONE.value for s in states):
            return
        time.sleep(0.5)
    raise AssertionError("the restarted service did not index and score everything")


def _check(settings: Settings, engine: object, acknowledged: set[str]) -> set[str]:
    from xraygate.core.models import InstanceResult

    store = store_from_settings(settings)
    with db.read_session(engine) as session:  # type: ignore[arg-type]
        rows = session.exec(select(Instance)).all()
        jobs = session.exec(select(Job).where(Job.kind == "infer")).all()
        results = session.exec(select(InstanceResult).where(InstanceResult.shadow == False)).all()  # noqa: E712
    indexed = {r.sop_instance_uid for r in rows}
    assert acknowledged <= indexed, "an acknowledged instance was lost"
    assert len(rows) == len(indexed)
    for row in rows:
        data = store.get_bytes(row.object_key)
        assert hashlib.sha256(data).hexdigest() == row.sha256 and len(data) == row.size
    assert sorted(j.instance_uid or "" for j in jobs) == sorted(indexed), "one infer job each"
    scored = sorted(r.sop_instance_uid for r in results)
    assert scored == sorted(indexed), "every indexed instance read exactly once"
    assert all(r.score is not None for r in results), "synthetic chests are scored"
    return indexed


@pytest.mark.timeout(900)
def test_serve_sigkilled_during_parallel_associations_loses_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    """8 associations x 50 instances into `xraygate serve` (2 receiving processes, journal
    on), SIGKILLed at a random point: after a restart every acknowledged instance is indexed,
    stored with its sha256 and scored exactly once; sending everything again adds nothing."""
    import random

    paths = _corpus(tmp_path / "corpus", 400)
    batches = [paths[n::8] for n in range(8)]
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("XRAYGATE_")},
        "XRAYGATE_DATA_DIR": str(settings.data_dir),
        "XRAYGATE_DATABASE_URL": settings.resolved_database_url,
        "XRAYGATE_DICOM_HOST": "127.0.0.1",
        "XRAYGATE_DICOM_PORT": str(port),
        "XRAYGATE_MIN_FREE_BYTES": "0",
        "XRAYGATE_SCP_PROCESSES": "2",
        "XRAYGATE_LOG_LEVEL": "WARNING",
        "XRAYGATE_QUEUE_LEASE_SECONDS": "20",  # a job running at the kill is taken again soon
    }
    acknowledged: list[str] = []
    threshold = random.randint(20, 300)
    first = _serve(env)
    second: subprocess.Popen[bytes] | None = None
    try:
        _wait_listening(port, first)

        def killer() -> None:
            while len(acknowledged) < threshold and first.poll() is None:
                time.sleep(0.001)
            time.sleep(random.uniform(0.0, 0.05))  # in a transfer, an ingest or a commit
            _kill_group(first)

        kill = threading.Thread(target=killer, daemon=True)
        kill.start()
        _send_all(port, batches, acknowledged)
        kill.join(timeout=120)
        assert first.returncode == -signal.SIGKILL
        assert threshold <= len(acknowledged) < 400, "the kill landed mid-transfer"

        second = _serve(env)
        _wait_listening(port, second)
        engine = db.get_engine(settings.resolved_database_url)
        _settled(engine, len(set(acknowledged)), second)
        _check(settings, engine, set(acknowledged))

        again: list[str] = []
        _send_all(port, batches, again)
        if len(again) != 400:  # where is the service stuck? every thread's stack to stderr
            os.killpg(second.pid, signal.SIGUSR1)
            time.sleep(3)
        assert len(again) == 400, "the restarted service acknowledges everything"
        _settled(engine, 400, second)
        assert len(_check(settings, engine, set(again))) == 400, "re-sending adds no duplicate"
    finally:
        _kill_group(first)
        if second is not None:
            _kill_group(second)
