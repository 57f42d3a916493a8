"""Issue 10 item 5 / issue 11 items 4 and 6: deflate, C-STOREs outside their context, retired
classes, UID syntax, association limits and rejections, over real associations."""

from __future__ import annotations

import logging
import time
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
)
from pynetdicom import AE, build_context
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.dicom_scp.conftest import RunningScp, new_ct, sample, start
from tests.dicom_scp.test_bad_input import send_raw
from xraygate.core.config import Settings
from xraygate.dicom_scp.guard import MAX_CONTROL_PDU, pdu_limit, retired_storage_classes
from xraygate.dicom_scp.status import Status

pytestmark = pytest.mark.integration

CR = "1.2.840.10008.5.1.4.1.1.1"
US_RETIRED = "1.2.840.10008.5.1.4.1.1.6"


def associate(port: int, contexts: list[PresentationContext], calling: str = "MODALITY1") -> AE:
    ae = AE(ae_title=calling)
    ae.requested_contexts = contexts
    return ae.associate("127.0.0.1", port, ae_title="XRAYGATE")


def store_in_context(assoc: object, ds: Dataset, context_id: int, message_id: int) -> Dataset:
    """Send ``ds`` as a C-STORE on the context ``context_id``, whatever its abstract syntax
    (as dcmtk does for some malformed files); the response primitive."""
    req = C_STORE()
    req.MessageID = message_id
    req.Priority = 2
    req.AffectedSOPClassUID = ds.SOPClassUID
    req.AffectedSOPInstanceUID = ds.SOPInstanceUID
    req.DataSet = BytesIO(encode(ds, False, True))
    a = assoc
    a._reactor_checkpoint.clear()  # type: ignore[attr-defined]
    while not a._is_paused:  # type: ignore[attr-defined]
        time.sleep(0.001)
    a.dimse.send_msg(req, context_id)  # type: ignore[attr-defined]
    _cx, rsp = a.dimse.get_msg(block=True)  # type: ignore[attr-defined]
    a._reactor_checkpoint.set()  # type: ignore[attr-defined]
    assert rsp is not None, "no C-STORE response (the association was aborted)"
    return rsp


def test_c_store_outside_its_context_is_refused_and_the_association_goes_on(
    scp: RunningScp,
) -> None:
    assoc = associate(
        scp.port,
        [build_context(CTImageStorage, ExplicitVRLittleEndian), build_context(CR)],
    )
    assert assoc.is_established
    ct_context = next(c for c in assoc.accepted_contexts if c.abstract_syntax == CTImageStorage)
    # pynetdicom alone aborts on the first (no service class for an unknown SOP class) and
    # stores the second under the CT context's terms
    for n, sop_class in enumerate(["1.2.3.4.5.6.7", CR], start=1):
        stray = new_ct()
        stray.SOPClassUID = sop_class
        rsp = store_in_context(assoc, stray, int(ct_context.context_id), n)
        assert rsp.Status == Status.DATASET_MISMATCH
        assert "presentation context" in str(rsp.ErrorComment)
        assert assoc.is_established and not assoc.is_aborted
    good = new_ct()
    assert store_in_context(assoc, good, int(ct_context.context_id), 3).Status == 0
    for _ in range(3):  # and the rest of the batch goes through
        assert int(assoc.send_c_store(new_ct()).Status) == 0
    assoc.release()
    assert len(scp.instances()) == 4
    assert list(scp.settings.tmp_dir.iterdir()) == [], "the refused data set is not left spooled"


def test_retired_storage_classes_are_accepted_and_stored(scp: RunningScp) -> None:
    retired = retired_storage_classes()
    assert US_RETIRED in retired and "1.2.840.10008.5.1.4.1.1.3" in retired  # US, US multi-frame
    assoc = associate(scp.port, [build_context(US_RETIRED, ExplicitVRLittleEndian)])
    assert assoc.is_established
    assert [c.abstract_syntax for c in assoc.accepted_contexts] == [US_RETIRED]
    ds = new_ct()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = US_RETIRED
    assert int(assoc.send_c_store(ds).Status) == 0
    assoc.release()
    [row] = scp.instances()
    assert row.sop_class_uid == US_RETIRED


def test_deflated_data_set_is_stored(scp: RunningScp) -> None:
    path = sample("image_dfl.dcm")
    assert dcmread(path).file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert send_raw(scp.port, path) == Status.SUCCESS
    row = scp.assert_stored(path)
    assert row.transfer_syntax_uid == DeflatedExplicitVRLittleEndian


def test_truncated_or_corrupt_deflate_cannot_be_understood(scp: RunningScp, tmp_path: Path) -> None:
    data = sample("image_dfl.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 2000])
    assert send_raw(scp.port, cut) == Status.CANNOT_UNDERSTAND
    start_of_data = 144 + int.from_bytes(data[140:144], "little")
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(data[:start_of_data] + b"\xff" * 64 + data[start_of_data + 64 :])
    assert send_raw(scp.port, corrupt) == Status.CANNOT_UNDERSTAND
    assert scp.instances() == []


def test_deflate_bomb_is_refused_while_inflating(
    scp: RunningScp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A deflated data set whose private OB value inflates past the limit is refused 0xA900."""
    caplog.set_level(logging.WARNING, logger="xraygate.core.ingest")
    scp.settings.max_image_pixels = 20_000  # CT_small has 16384; inflated limit ~64.2 MiB
    ds = new_ct()
    ds.add_new(0x00091010, "OB", bytes(80 * 1024 * 1024))  # 80 MiB of zeros: ~80 KiB deflated
    path = tmp_path / "bomb.dcm"
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    assert path.stat().st_size < 1024 * 1024
    assert send_raw(scp.port, path) == Status.DATASET_MISMATCH
    assert scp.instances() == []
    assert any("inflates past" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("uid", ["1.2.3/../../4", "1.2..3", "1.2.3.", "1.2.a", "1." + "2" * 70])
def test_malformed_uid_is_refused_before_it_becomes_a_key(
    scp: RunningScp, tmp_path: Path, uid: str
) -> None:
    ds = new_ct()
    ds.StudyInstanceUID = uid
    path = tmp_path / "bad-uid.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert send_raw(scp.port, path) == Status.DATASET_MISMATCH
    assert scp.instances() == []
    assert not [p for p in scp.settings.data_dir.rglob("*") if p.is_file() and p.suffix == ".dcm"]


def test_pdu_limits() -> None:
    assert pdu_limit(0x04, 131072) == 131072
    assert pdu_limit(0x04, 0) == 0  # unlimited when we negotiated no maximum
    assert pdu_limit(0x01, 131072) == MAX_CONTROL_PDU


def _wait_associable(port: int, calling: str) -> AE:
    deadline = time.monotonic() + 30
    while True:
        assoc = associate(port, [build_context(Verification)], calling)
        if assoc.is_established or time.monotonic() > deadline:
            return assoc
        time.sleep(0.1)


def test_association_limits_per_calling_ae_and_address(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.max_associations_per_aet = 2
    settings.max_associations_per_address = 3
    running = start(settings)
    caplog.set_level(logging.WARNING, logger="xraygate.dicom_scp.guard")
    echo = [build_context(Verification)]
    try:
        first = [associate(running.port, echo, "MODALITY_A") for _ in range(2)]
        assert all(a.is_established for a in first)
        third = associate(running.port, echo, "MODALITY_A")
        assert third.is_rejected
        other = associate(running.port, echo, "MODALITY_B")
        assert other.is_established, "another AE title from the same address still gets in"
        fourth = associate(running.port, echo, "MODALITY_C")
        assert fourth.is_rejected, "the per-address limit (3) is reached"
        messages = [r.getMessage() for r in caplog.records]
        assert any(
            "associations open for this calling AE" in m and "'MODALITY_A'" in m for m in messages
        )
        assert any("from this address" in m and "127.0.0.1" in m for m in messages)
        first[0].release()
        again = _wait_associable(running.port, "MODALITY_A")
        assert again.is_established, "a released association frees its place"
        for assoc in (first[1], other, again):
            assoc.release()
    finally:
        running.server.shutdown()


def _rejections(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]


def test_called_ae_title_is_required_by_default(
    scp: RunningScp, caplog: pytest.LogCaptureFixture
) -> None:
    assert scp.settings.require_called_aet
    caplog.set_level(logging.WARNING, logger="xraygate.dicom_scp.guard")
    ae = AE(ae_title="MODALITY1")
    ae.requested_contexts = [build_context(Verification)]
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="SOMEONE_ELSE")
    assert assoc.is_rejected
    # pynetdicom's EVT_REJECTED (which logs) fires after the reject is on the wire
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _rejections(caplog):
        time.sleep(0.01)
    [message] = _rejections(caplog)
    assert "called AE title not recognised" in message
    assert "'MODALITY1'" in message and "'SOMEONE_ELSE'" in message and "127.0.0.1" in message
    assert associate(scp.port, [build_context(Verification)]).is_established


def test_uid_with_a_leading_zero_component_is_accepted(scp: RunningScp) -> None:
    """Leading zeros in a component (PS3.5 forbids them; real modalities send them) are
    harmless in a key and accepted."""
    ds = new_ct(study="1.2.826.0.1.3680043.2.01.7")
    assoc = associate(scp.port, [build_context(CTImageStorage, ExplicitVRLittleEndian)])
    assert int(assoc.send_c_store(ds).Status) == 0
    assoc.release()
