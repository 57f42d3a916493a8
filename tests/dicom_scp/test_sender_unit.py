"""The SCU's file scanning and association batching (no network)."""

from __future__ import annotations

from pathlib import Path

from tests.dicom_scp.conftest import sample
from xraygate.dicom_scp.sender import MAX_CONTEXTS, Item, SendReport, batches, scan


def test_batches_keep_each_association_within_the_context_limit() -> None:
    items = [Item(Path(f"{n}.dcm"), f"1.2.3.{n % 300}", "1.2.840.10008.1.2.1") for n in range(900)]
    groups = list(batches(items))
    assert [i for g in groups for i in g] == items, "every file once, in order"
    for group in groups:
        assert len({(i.sop_class, i.transfer_syntax) for i in group}) <= MAX_CONTEXTS <= 128
    assert len(groups) > 1


def test_same_context_files_share_one_association() -> None:
    items = [Item(Path(f"{n}.dcm"), "1.2.3", "1.2.840.10008.1.2.1") for n in range(500)]
    assert len(list(batches(items))) == 1


def test_scan_reports_missing_and_non_dicom_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    report = SendReport()
    items = scan([sample("CT_small.dcm"), tmp_path, tmp_path / "missing.dcm"], report)
    assert [i.path for i in items] == [sample("CT_small.dcm")]
    assert report.failed == 2 and report.sent == 0
    comments = sorted(c for _, _, c in report.failures)
    assert comments[0] == "no such file or directory"
    assert comments[1].startswith("not a DICOM file")


def test_warnings_count_as_sent() -> None:
    report = SendReport()
    report.record(Path("a"), 0xB000)
    report.record(Path("b"), 0xA700, "full")
    assert (report.sent, report.failed) == (1, 1)
    assert report.failures == [("b", 0xA700, "full")]


def test_status_classes() -> None:
    from xraygate.dicom_scp.status import Status

    assert Status.OUT_OF_RESOURCES_STORAGE_FULL.retryable
    assert Status.OUT_OF_RESOURCES_DATABASE.retryable
    assert not Status.DATASET_MISMATCH.retryable and not Status.CANNOT_UNDERSTAND.retryable
    assert 0xA700 <= Status.OUT_OF_RESOURCES_STORAGE_FULL <= 0xA7FF
    assert not Status.SUCCESS.is_failure and Status.CANNOT_UNDERSTAND.is_failure
