"""Bad input gets the right DICOM status, and nothing accepted earlier is lost."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.filereader import read_file_meta_info
from pydicom.uid import CTImageStorage
from pynetdicom import AE, _config, build_context

from tests.dicom_scp.conftest import RunningScp, sample, start
from xraygate.core.config import Settings
from xraygate.core.errors import StorageFull
from xraygate.dicom_scp.status import Status

pytestmark = pytest.mark.integration


def send_raw(port: int, path: Path, calling: str = "MODALITY1") -> int:
    """Stream the file's bytes as they are (pynetdicom's chunked send), like a broken modality;
    only the file meta is read on our side, so a corrupt data set is sent as it is."""
    meta = read_file_meta_info(path)
    ae = AE(ae_title=calling)
    ae.add_requested_context(meta.MediaStorageSOPClassUID, [meta.TransferSyntaxUID])
    assoc = ae.associate("127.0.0.1", port, ae_title="XRAYGATE")
    assert assoc.is_established
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        status = int(assoc.send_c_store(path).Status)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        assoc.release()
    return status


def accepted_first(scp: RunningScp) -> Path:
    good = sample("CT_small.dcm")
    assert send_raw(scp.port, good) == Status.SUCCESS
    return good


def test_calling_ae_not_on_the_allowlist_is_rejected(settings: Settings) -> None:
    settings.allowed_calling_aets = ["MODALITY1"]
    running = start(settings)
    try:
        ae = AE(ae_title="INTRUDER")
        ae.requested_contexts = [build_context(CTImageStorage)]
        assoc = ae.associate("127.0.0.1", running.port, ae_title="XRAYGATE")
        assert assoc.is_rejected
        assert send_raw(running.port, sample("CT_small.dcm"), calling="MODALITY1") == 0
    finally:
        running.server.shutdown()


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm"])
def test_truncated_dataset_cannot_be_understood(scp: RunningScp, tmp_path: Path, name: str) -> None:
    good = accepted_first(scp)
    data = sample(name).read_bytes()
    cut = tmp_path / "truncated.dcm"
    cut.write_bytes(data[: len(data) // 2])
    assert send_raw(scp.port, cut) == Status.CANNOT_UNDERSTAND
    assert len(scp.instances()) == 1
    scp.assert_stored(good)
    assert list(scp.settings.tmp_dir.iterdir()) == [], "spooled files are cleaned up"


def test_garbage_dataset_cannot_be_understood(scp: RunningScp, tmp_path: Path) -> None:
    good = accepted_first(scp)
    src = sample("CT_small.dcm").read_bytes()
    meta_end = 132 + 12 + int.from_bytes(src[140:144], "little")
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(src[:meta_end] + b"\x08\x00\x16\x00UI\xff\xff" + b"\x00" * 64)
    assert send_raw(scp.port, garbage) == Status.CANNOT_UNDERSTAND
    scp.assert_stored(good)


@pytest.mark.parametrize("cut", [100, 20_000], ids=["in-pixel-data", "in-the-header"])
def test_truncated_small_dataset_received_in_memory_cannot_be_understood(
    scp: RunningScp, tmp_path: Path, cut: int
) -> None:
    """A data set whose last value ends early (the SCP parses it from memory: every value is
    read and compared with its declared length) is refused, never stored."""
    good = accepted_first(scp)
    src = sample("CT_small.dcm").read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(src[:-cut])
    assert send_raw(scp.port, truncated) == Status.CANNOT_UNDERSTAND
    assert len(scp.instances()) == 1
    scp.assert_stored(good)


def file_claiming(ds: Dataset, claimed_sop_class: str, path: Path) -> Path:
    """A file whose meta (and so the C-STORE request) names ``claimed_sop_class``."""
    ds.file_meta.MediaStorageSOPClassUID = claimed_sop_class
    ds.save_as(path)  # as is: enforce_file_format would reset the meta from the data set
    return path


def test_dataset_not_matching_its_sop_class(scp: RunningScp, tmp_path: Path) -> None:
    good = accepted_first(scp)
    ds = dcmread(sample("CT_small.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
    cr = "1.2.840.10008.5.1.4.1.1.1"  # the request says CR; the data set is a CT
    assert send_raw(scp.port, file_claiming(ds, cr, tmp_path / "a.dcm")) == Status.DATASET_MISMATCH
    assert len(scp.instances()) == 1
    scp.assert_stored(good)
    ok = file_claiming(ds, str(ds.SOPClassUID), tmp_path / "b.dcm")
    assert send_raw(scp.port, ok) == Status.SUCCESS
    scp.assert_stored(ok)


def test_missing_study_uid_is_a_mismatch(scp: RunningScp, tmp_path: Path) -> None:
    ds = dcmread(sample("CT_small.dcm"))
    del ds.StudyInstanceUID
    path = tmp_path / "nostudy.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert send_raw(scp.port, path) == Status.DATASET_MISMATCH


def test_low_free_space_refuses_with_out_of_resources(scp: RunningScp) -> None:
    good = accepted_first(scp)
    scp.settings.min_free_bytes = 1 << 62
    rg1 = sample("RG1_UNCR.dcm")
    assert send_raw(scp.port, rg1) == Status.OUT_OF_RESOURCES_STORAGE_FULL
    scp.settings.min_free_bytes = 0
    scp.assert_stored(good)
    assert send_raw(scp.port, rg1) == Status.SUCCESS, "the sender's retry succeeds"
    scp.assert_stored(rg1)


def test_disk_full_while_writing_refuses_and_keeps_earlier(
    scp: RunningScp, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = accepted_first(scp)

    def full(*_a: object, **_k: object) -> None:
        raise StorageFull("no space left")

    monkeypatch.setattr(scp.store, "put_file", full)
    assert send_raw(scp.port, sample("RG1_UNCR.dcm")) == Status.OUT_OF_RESOURCES_STORAGE_FULL
    assert len(scp.instances()) == 1 and len(scp.jobs()) == 1
    scp.assert_stored(good)


def _break_index(scp: RunningScp) -> None:
    from sqlalchemy import text

    with scp.queue.engine.begin() as conn:
        conn.execute(text("ALTER TABLE jobs RENAME TO jobs_away"))


def _mend_index(scp: RunningScp) -> None:
    from sqlalchemy import text

    with scp.queue.engine.begin() as conn:
        conn.execute(text("ALTER TABLE jobs_away RENAME TO jobs"))


def _wait(predicate: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_database_failure_is_retryable_and_keeps_earlier(settings: Settings) -> None:
    """Journal mode: the index is unavailable (its jobs table is gone). What was journaled
    before the indexer noticed stays acknowledged and is indexed once the database is back;
    from then on C-STOREs get 0xA702 (out of resources, database: send again), not 0x0110."""
    scp = start(settings)
    try:
        good = accepted_first(scp)
        assert scp.server.ingestor.flush(), "indexed before the database breaks"
        _break_index(scp)
        try:
            rg1 = sample("RG1_UNCR.dcm")
            assert send_raw(scp.port, rg1) == Status.SUCCESS, "journaled: durable, acknowledged"
            thread = scp.server.ingestor.thread
            assert thread is not None
            _wait(lambda: thread.failing)
            ct = sample("CT_small.dcm")
            other = dcmread(ct)
            other.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.777"
            other.file_meta.MediaStorageSOPInstanceUID = other.SOPInstanceUID
            refused = Path(scp.settings.data_dir) / "other.dcm"
            other.save_as(refused)
            assert send_raw(scp.port, refused) == Status.OUT_OF_RESOURCES_DATABASE
        finally:
            _mend_index(scp)
        assert sorted(i.sop_instance_uid for i in scp.instances()) == sorted(
            [dcmread(good).SOPInstanceUID, dcmread(rg1).SOPInstanceUID]
        )
        scp.assert_stored(good)
        scp.assert_stored(rg1)
        _wait(lambda: not thread.failing)
        assert send_raw(scp.port, refused) == Status.SUCCESS, "the sender's retry succeeds"
        scp.assert_stored(refused)
        assert list(scp.settings.tmp_dir.iterdir()) == []
    finally:
        scp.server.shutdown()


def test_database_failure_without_journal_answers_a702(settings: Settings) -> None:
    """Direct mode (rows committed before the answer): the failing C-STORE itself gets 0xA702."""
    settings.ingest_journal = False
    scp = start(settings)
    try:
        assert scp.server.ingestor.journal is None
        good = accepted_first(scp)
        _break_index(scp)
        try:
            rg1 = sample("RG1_UNCR.dcm")
            assert send_raw(scp.port, rg1) == Status.OUT_OF_RESOURCES_DATABASE
        finally:
            _mend_index(scp)
        assert [i.sop_instance_uid for i in scp.instances()] == [dcmread(good).SOPInstanceUID]
        assert send_raw(scp.port, rg1) == Status.SUCCESS, "the sender's retry succeeds"
        scp.assert_stored(rg1)
        assert list(scp.settings.tmp_dir.iterdir()) == []
    finally:
        scp.server.shutdown()


def test_unexpected_error_answers_processing_failure(
    scp: RunningScp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xraygate.core.ingest import header

    good = accepted_first(scp)

    def broken(*_a: object, **_k: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(header, "validate", broken)
    assert send_raw(scp.port, sample("RG1_UNCR.dcm")) == Status.PROCESSING_FAILURE
    monkeypatch.undo()
    assert len(scp.instances()) == 1
    scp.assert_stored(good)
