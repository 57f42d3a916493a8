"""Issue 13: the C-STORE fast path over real associations on loopback: it serves the stores,
leaves everything else to pynetdicom, stores the same bytes as pynetdicom's path, and never
keeps a data set it did not acknowledge."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.dicom_scp.conftest import RunningScp, new_ct, sample, start
from xraygate.core.config import Settings
from xraygate.core.storage import LocalStore
from xraygate.dicom_scp import dimse_codec as codec
from xraygate.dicom_scp.fastpath import FastStore, _Spool
from xraygate.dicom_scp.status import Status

pytestmark = pytest.mark.integration

CR = "1.2.840.10008.5.1.4.1.1.1"


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SOP instance UIDs the fast path answered (a spy on FastStore._answer)."""
    seen: list[str] = []
    original = FastStore._answer

    def spy(self: FastStore) -> None:
        assert self._request is not None
        seen.append(self._request.sop_instance_uid)
        original(self)

    monkeypatch.setattr(FastStore, "_answer", spy)
    return seen


def _associate(port: int) -> Any:
    ae = AE(ae_title="MODALITY1")
    ae.requested_contexts = [
        build_context(CTImageStorage, ExplicitVRLittleEndian),
        build_context(Verification),
    ]
    assoc = ae.associate("127.0.0.1", port, ae_title="XRAYGATE")
    assert assoc.is_established
    return assoc


def _settle(assoc: Any) -> None:
    """Let a pynetdicom requestor's reactor resume before the next request. Its send_*()
    methods pause it with a flag the reactor leaves set for a moment after it resumes; a
    request sent in that moment can have its response taken by the reactor ("Received
    unexpected C-ECHO service message", then a DIMSE timeout). With an SCP in the same process
    that answers within a GIL switch, back-to-back requests met it (1 run in ~15 under load).
    A client-side race of pynetdicom, not of the SCP under test."""
    deadline = time.monotonic() + 5
    while assoc._is_paused and time.monotonic() < deadline:
        time.sleep(0.0005)


def test_stores_take_the_fast_path_and_echoes_go_to_pynetdicom(
    scp: RunningScp, answered: list[str], tmp_path: Path
) -> None:
    assoc = _associate(scp.port)
    sent = []
    for _ in range(4):
        ds = new_ct()
        assert int(assoc.send_c_store(ds).Status) == Status.SUCCESS
        _settle(assoc)
        assert int(assoc.send_c_echo().Status) == 0
        _settle(assoc)
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        sent.append(path)
    assoc.release()
    assert answered == [p.stem for p in sent]  # every store on the fast path, in order
    for path in sent:
        scp.assert_stored(path)


def test_fast_path_off_leaves_every_message_to_pynetdicom(
    settings: Settings, answered: list[str]
) -> None:
    settings.scp_fast_path = False
    running = start(settings)
    try:
        assoc = _associate(running.port)
        assert int(assoc.send_c_store(new_ct()).Status) == Status.SUCCESS
        assoc.release()
        assert answered == []
        assert len(running.instances()) == 1
    finally:
        running.server.shutdown()


@pytest.mark.parametrize("memory", [0, 20_000, 4 * 2**20], ids=["file", "spilled", "memory"])
def test_both_paths_store_the_same_bytes(
    settings: Settings, answered: list[str], memory: int
) -> None:
    """The object (file meta + data set as received) is identical whichever path took it, and
    whether the fast path received it into a spool file, into memory, or into memory first
    and then a file (a limit smaller than the data set), so a resend after switching paths is
    the same version, not a new one. Nothing is left beside the stored object."""
    path = sample("CT_small.dcm")
    digests = []
    settings.scp_spool_memory_bytes = memory
    for fast in (False, True):
        settings.scp_fast_path = fast
        running = start(settings)
        try:
            assoc = _associate(running.port)
            assert int(assoc.send_c_store(path).Status) == Status.SUCCESS
            assoc.release()
            [row] = running.instances()
            digests.append((row.sha256, row.object_key))
            assert running.store.get_bytes(row.object_key) == _part10(path)
            assert isinstance(running.store, LocalStore)
            assert [p.name for p in running.store.root.rglob(".incoming-*")] == []
            assert _spooled(settings) == []
        finally:
            running.server.shutdown()
    assert len(answered) == 1
    assert digests[0] == digests[1]


def _part10(path: Path) -> bytes:
    """What an SCP stores for ``path`` sent in its own transfer syntax: file meta as pynetdicom
    writes it, then the data set's bytes unchanged."""
    from pynetdicom.dsutils import create_file_meta, encode_file_meta

    ds = dcmread(path)
    meta = create_file_meta(
        sop_class_uid=ds.SOPClassUID,
        sop_instance_uid=ds.SOPInstanceUID,
        transfer_syntax=ds.file_meta.TransferSyntaxUID,
    )
    raw = path.read_bytes()
    offset = 132 + 12 + int.from_bytes(raw[140:144], "little")
    return b"\x00" * 128 + b"DICM" + bytes(encode_file_meta(meta)) + raw[offset:]


def _spooled(settings: Settings) -> list[Path]:
    return sorted(settings.tmp_dir.glob("tmp*.dcm"))


def _wait(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def file_scp(settings: Settings) -> Iterator[RunningScp]:
    """An SCP whose fast path spools every data set to a file (no memory buffer), so that
    the tests below can watch the spool files."""
    settings.scp_spool_memory_bytes = 0
    running = start(settings)
    yield running
    running.server.shutdown()


@pytest.fixture
def half_sent(file_scp: RunningScp) -> Iterator[tuple[Any, int]]:
    """An association on which a C-STORE-RQ and the first fragment of its data set were sent
    (raw P-DATA-TF PDUs on the association's socket) and spooled by the SCP."""
    scp = file_scp
    assoc = _associate(scp.port)
    context = assoc.accepted_contexts[0].context_id
    command = _store_rq(message_id=1, instance=new_ct().SOPInstanceUID)
    for pdu in codec.command_pdus(context, command, 0):
        assoc.dul.socket.send(pdu)
    assoc.dul.socket.send(codec.pdata_pdu([(context, 0x00, b"\x08\x00\x16\x00" * 64)]))
    assert _wait(lambda: len(_spooled(scp.settings)) == 1), "the fragment was not spooled"
    yield assoc, context
    if assoc.is_established:
        assoc.abort()


def _store_rq(message_id: int, instance: str) -> bytes:
    from io import BytesIO

    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = CTImageStorage
    primitive.AffectedSOPInstanceUID = instance
    primitive.Priority = 2
    primitive.DataSet = BytesIO(b"\x08\x00\x16\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    data = encode(message.command_set, True, True)
    assert data is not None
    return data


def test_command_inside_a_data_set_aborts_and_nothing_is_kept(
    file_scp: RunningScp, half_sent: tuple[Any, int]
) -> None:
    scp = file_scp
    assoc, context = half_sent
    assoc.dul.socket.send(codec.pdata_pdu([(context, 0x01, b"\x00\x00\x00\x01")]))
    assert _wait(lambda: assoc.is_aborted), "the SCP did not abort the association"
    assert _wait(lambda: _spooled(scp.settings) == []), "a never-acknowledged spool file stayed"
    assert scp.instances() == []
    assert int(_associate(scp.port).send_c_store(new_ct()).Status) == Status.SUCCESS


def test_malformed_pdv_aborts_and_nothing_is_kept(
    file_scp: RunningScp, half_sent: tuple[Any, int]
) -> None:
    scp = file_scp
    assoc, _context = half_sent
    body = b"\x00\x00\x00\x40\x01\x00" + b"\x00" * 8  # an item longer than its PDU
    assoc.dul.socket.send(codec.PDU_HEADER.pack(0x04, 0, len(body)) + body)
    assert _wait(lambda: assoc.is_aborted), "the SCP did not abort the association"
    assert _wait(lambda: _spooled(scp.settings) == [])
    assert scp.instances() == []


def test_peer_gone_mid_data_set_leaves_no_spool_file(
    file_scp: RunningScp, half_sent: tuple[Any, int]
) -> None:
    scp = file_scp
    assoc, _context = half_sent
    assoc.abort()
    assert _wait(lambda: _spooled(scp.settings) == []), "a never-acknowledged spool file stayed"
    assert scp.instances() == []


@pytest.mark.parametrize(
    ("error", "status", "failing_write"),
    [
        (errno.ENOSPC, Status.OUT_OF_RESOURCES_STORAGE_FULL, 3),  # mid data set (7 MB CR)
        (errno.EIO, Status.OUT_OF_RESOURCES, 1),  # creating the spool file (its meta)
    ],
)
def test_a_spool_that_fails_mid_data_set_is_refused_not_aborted(
    file_scp: RunningScp,
    monkeypatch: pytest.MonkeyPatch,
    error: int,
    status: Status,
    failing_write: int,
) -> None:
    """A full (or failing) local disk while a data set arrives: the rest of it is received,
    the answer is a "send again" status, the partial file is gone and the association goes on."""
    scp = file_scp
    original = _Spool.write
    calls = {"n": 0}

    def failing(self: _Spool, data: bytes | memoryview) -> None:
        calls["n"] += 1
        if calls["n"] == failing_write:
            raise OSError(error, os.strerror(error))
        original(self, data)

    monkeypatch.setattr(_Spool, "write", failing)
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CR, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="XRAYGATE")
    assert assoc.is_established
    cr = dcmread(sample("RG1_UNCR.dcm"))
    answer = assoc.send_c_store(cr)
    assert calls["n"] == failing_write, "nothing is written after the failure"
    assert int(answer.Status) == status
    assert "send again" in str(answer.ErrorComment)
    assert _spooled(scp.settings) == []
    assert scp.instances() == []
    monkeypatch.setattr(_Spool, "write", original)
    assert int(assoc.send_c_store(cr).Status) == Status.SUCCESS
    assoc.release()
    assert [i.sop_instance_uid for i in scp.instances()] == [cr.SOPInstanceUID]


def test_spool_keeps_a_small_data_set_in_memory_and_spills_a_larger_one(tmp_path: Path) -> None:
    import hashlib

    small = _Spool(str(tmp_path), b"M" * 10, memory_limit=100)
    small.write(b"x" * 90)  # 100 bytes: still in memory
    assert small.finish() == (100, hashlib.sha256(b"M" * 10 + b"x" * 90).hexdigest())
    assert small.data == b"M" * 10 + b"x" * 90 and small.path is None
    assert list(tmp_path.iterdir()) == []

    large = _Spool(str(tmp_path), b"M" * 10, memory_limit=100)
    large.write(b"a" * 50)
    large.write(b"b" * 50)  # past the limit: what came before goes to the file first
    large.write(b"c" * 5)
    whole = b"M" * 10 + b"a" * 50 + b"b" * 50 + b"c" * 5
    assert large.finish() == (len(whole), hashlib.sha256(whole).hexdigest())
    assert large.data is None and large.path is not None
    assert large.path.read_bytes() == whole
    large.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_deflated_data_set_is_never_parsed_from_memory() -> None:
    """The fast path spools deflated data sets to a file (the ingest inflates them from one);
    one handed to the ingest in memory anyway is refused, not mis-parsed."""
    from io import BytesIO

    from xraygate.core.errors import IngestError
    from xraygate.core.ingest.header import read_header_bytes

    buffer = BytesIO()
    ds = dcmread(sample("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    ds.save_as(buffer, enforce_file_format=True)
    for announced in ("", "1.2.840.10008.1.2.1.99"):  # read from its File Meta, or as sent
        with pytest.raises(IngestError) as refused:
            read_header_bytes(buffer.getvalue(), announced)
        assert refused.value.status == Status.PROCESSING_FAILURE


@pytest.mark.parametrize("memory", [0, 4 * 2**20], ids=["file", "memory"])
def test_messages_split_over_many_small_pdus(
    settings: Settings, answered: list[str], tmp_path: Path, memory: int
) -> None:
    """Every P-DATA-TF body is read into one buffer that the next PDU overwrites: a command
    set spread over several PDUs (handed to pynetdicom whole: C-ECHO) and a data set in many
    fragments still arrive byte for byte."""
    settings.max_pdu_size = 64  # a C-STORE-RQ command set takes 3 PDUs, a C-ECHO-RQ 2
    settings.scp_spool_memory_bytes = memory
    running = start(settings)
    try:
        assoc = _associate(running.port)
        assert int(assoc.send_c_echo().Status) == 0
        _settle(assoc)
        ds = new_ct()
        assert int(assoc.send_c_store(ds).Status) == Status.SUCCESS
        _settle(assoc)
        assert int(assoc.send_c_echo().Status) == 0
        assoc.release()
        path = tmp_path / "sent.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert answered == [ds.SOPInstanceUID]
        running.assert_stored(path)
    finally:
        running.server.shutdown()
