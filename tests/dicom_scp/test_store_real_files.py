"""Real associations on loopback: pynetdicom and dcmtk storescu send real files."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.dicom_scp.conftest import SAMPLES, RunningScp, dcmtk, new_ct, sample, start
from xraygate.core.config import Settings

pytestmark = pytest.mark.integration


def send_with_pynetdicom(scp: RunningScp, paths: list[Path]) -> list[int]:
    from pydicom import dcmread

    headers = [dcmread(p, stop_before_pixels=True) for p in paths]
    contexts = {(str(h.SOPClassUID), str(h.file_meta.TransferSyntaxUID)) for h in headers}
    ae = AE(ae_title="MODALITY1")
    ae.requested_contexts = [build_context(c, [ts]) for c, ts in sorted(contexts)]
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="XRAYGATE")
    assert assoc.is_established
    statuses = [int(assoc.send_c_store(p).Status) for p in paths]
    assoc.release()
    return statuses


def test_pynetdicom_scu_stores_real_files(scp: RunningScp) -> None:
    paths = [sample(n) for n in SAMPLES]
    assert send_with_pynetdicom(scp, paths) == [0, 0, 0, 0]
    for path in paths:
        row = scp.assert_stored(path)
        assert row.calling_aet == "MODALITY1"
    assert len(scp.instances()) == 4


STORESCU_PROPOSAL = {
    "1.2.840.10008.1.2.4.90": "--propose-j2k-lossless",
    "1.2.840.10008.1.2.4.91": "--propose-j2k-lossy",
    "1.2.840.10008.1.2.4.50": "--propose-jpeg8",
    "1.2.840.10008.1.2.4.70": "--propose-lossless",
}


def send_with_storescu(port: int, path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu, proposing the file's own transfer syntax (no transcoding)."""
    from pydicom import dcmread

    first = next(iter(sorted(path.iterdir()))) if path.is_dir() else path
    syntax = str(dcmread(first, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    option = STORESCU_PROPOSAL.get(syntax, "--propose-little")
    return subprocess.run(
        [
            dcmtk("storescu"),
            "-aet",
            "DCMTK",
            "-aec",
            "XRAYGATE",
            option,
            *options,
            "127.0.0.1",
            str(port),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dcmtk_storescu_stores_real_files(scp: RunningScp, tmp_path: Path) -> None:
    for path in [sample(n) for n in SAMPLES]:
        proc = send_with_storescu(scp.port, path)
        assert proc.returncode == 0, proc.stderr
        assert scp.assert_stored(path).calling_aet == "DCMTK"
    copies = tmp_path / "copies"
    copies.mkdir()
    study = generate_uid()
    for n in range(3):
        new_ct(study).save_as(copies / f"{n}.dcm", enforce_file_format=True)
    proc = send_with_storescu(scp.port, copies, "+sd")
    assert proc.returncode == 0, proc.stderr
    for path in sorted(copies.iterdir()):
        scp.assert_stored(path)
    assert len(scp.instances()) == len(SAMPLES) + 3
    assert len(scp.jobs()) == len(SAMPLES) + 3


def test_s3_object_store_over_http(s3_settings: Settings) -> None:
    running = start(s3_settings)
    try:
        paths = [sample("RG1_UNCR.dcm"), sample("CT_small.dcm")]
        assert send_with_pynetdicom(running, paths) == [0, 0]
        for path in paths:
            row = running.assert_stored(path)
            assert row.object_key.startswith("dicom/")
        assert running.store.url.startswith("s3://")
        s3_settings.min_free_bytes = 1 << 62  # S3 is unbounded; the local spool disk is not
        assert send_with_pynetdicom(running, [sample("RG1_J2KR.dcm")]) == [0xA701]
        assert len(running.instances()) == 2
    finally:
        running.server.shutdown()


def test_c_echo(scp: RunningScp) -> None:
    ae = AE(ae_title="MODALITY1")
    ae.requested_contexts = [build_context(Verification)]
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="XRAYGATE")
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == 0
    assoc.release()


def test_resending_the_same_instance_is_idempotent(scp: RunningScp) -> None:
    path = sample("CT_small.dcm")
    assert send_with_pynetdicom(scp, [path, path]) == [0, 0]
    assert send_with_pynetdicom(scp, [path]) == [0]
    assert len(scp.instances()) == 1
    assert len(scp.jobs()) == 1
    scp.assert_stored(path)


def test_changed_object_with_same_uid_is_scored_again(scp: RunningScp, tmp_path: Path) -> None:
    from pydicom import dcmread

    first = sample("CT_small.dcm")
    changed = tmp_path / "changed.dcm"
    ds = dcmread(first)
    ds.SeriesDescription = "corrected by the technologist"
    ds.save_as(changed)
    assert send_with_pynetdicom(scp, [first]) == [0]
    assert len(scp.instances()) == 1  # indexed (a version superseded in the same indexer
    # batch, before it was ever indexed, is not scored: only the later one is)
    assert send_with_pynetdicom(scp, [changed]) == [0]
    [row] = scp.instances()
    stored = dcmread(io.BytesIO(scp.store.get_bytes(row.object_key)))
    assert stored.SeriesDescription == "corrected by the technologist"
    assert len({j.dedupe_key for j in scp.jobs()}) == 2
