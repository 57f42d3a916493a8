"""The pynetdicom receive adapter: whole PDUs from one buffer, spool files hashed on receipt."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydicom import dcmread

from tests.dicom_scp.conftest import RunningScp, sample
from xraygate.core.config import Settings
from xraygate.core.ingest import Ingestor, Received
from xraygate.core.queue import JobQueue
from xraygate.core.storage import store_from_settings
from xraygate.dicom_scp import netio
from xraygate.dicom_scp.netio import HashingSpool, hashing_temporary_file, recv_exact


def test_recv_exact_reads_a_pdu_sent_in_pieces() -> None:
    left, right = socket.socketpair()
    payload = os.urandom(300_000)

    def sender() -> None:
        for start in range(0, len(payload), 7_001):
            left.sendall(payload[start : start + 7_001])

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        got = recv_exact(SimpleNamespace(socket=right), len(payload))
        assert bytes(got) == payload and isinstance(got, bytearray)
    finally:
        thread.join()
        left.close()
        right.close()


def test_recv_exact_returns_what_came_when_the_peer_closes() -> None:
    left, right = socket.socketpair()
    left.sendall(b"abc")
    left.close()
    try:
        assert recv_exact(SimpleNamespace(socket=right), 10) == bytearray(b"abc")
    finally:
        right.close()


def test_hashing_spool_hashes_what_is_written(tmp_path: Path) -> None:
    spool = hashing_temporary_file(delete=False, mode="wb", suffix=".dcm", dir=tmp_path)
    assert isinstance(spool, HashingSpool)
    spool.write(b"\x00" * 128)
    spool.write(memoryview(b"DICM-payload"))
    spool.file.flush()
    size, sha = spool.digest()
    spool.close()
    data = Path(spool.name).read_bytes()
    assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest())


def test_a_stale_digest_is_not_trusted(settings: Settings, tmp_path: Path) -> None:
    """A digest whose size differs from the spool file's is recomputed, never indexed."""
    source = sample("CT_small.dcm")
    spool = tmp_path / "spool.dcm"
    spool.write_bytes(source.read_bytes())
    ds = dcmread(spool, stop_before_pixels=True)
    ingestor = Ingestor(settings, store_from_settings(settings), JobQueue.from_settings(settings))
    try:
        received = Received(
            spool, "T", str(ds.SOPClassUID), str(ds.SOPInstanceUID), sha256="0" * 64, size=1
        )
        assert ingestor.ingest(received).status == 0
        assert ingestor.flush()
    finally:
        ingestor.close()
    from sqlmodel import select

    from xraygate.core import db
    from xraygate.core.models import Instance

    with db.read_session(ingestor.queue.engine) as session:
        [row] = session.exec(select(Instance)).all()
    assert row.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()


@pytest.mark.integration
def test_scp_hashes_on_receipt_and_indexes_the_right_digest(scp: RunningScp) -> None:
    """Through a real association the spool file is a HashingSpool; the indexed sha256 is that
    of the stored bytes (assert_stored reads them back)."""
    from pynetdicom import AE

    seen: list[bool] = []
    original = scp.server.ingestor.ingest

    def spy(received: Received):  # type: ignore[no-untyped-def]
        seen.append(received.sha256 is not None)
        return original(received)

    scp.server.ingestor.ingest = spy  # type: ignore[method-assign]
    path = sample("RG1_UNCR.dcm")
    ds = dcmread(path)
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="XRAYGATE")
    assert assoc.is_established
    try:
        assert int(assoc.send_c_store(ds).Status) == 0
    finally:
        assoc.release()
    assert seen == [True], "the handler got the digest computed on receipt"
    scp.assert_stored(path)


def test_set_uid_remembers_what_it_made_and_never_an_invalid_value() -> None:
    from pydicom.uid import UID
    from pynetdicom import utils

    netio._uid.cache_clear()
    for value in ("1.2.840.10008.1.2.1", b"1.2.840.10008.1.2.1\x00", UID("1.2.840.10008.1.2")):
        ours = netio.set_uid(value, "Transfer Syntax Name")
        assert ours == utils.set_uid(value, "Transfer Syntax Name")
        assert isinstance(ours, UID)
        assert netio.set_uid(value, "Transfer Syntax Name") is ours  # the second time: cached
    assert netio.set_uid(None, "Abstract Syntax Name") is None  # not cached: as pynetdicom
    for _ in range(2):  # an invalid UID is refused every time, never remembered
        with pytest.raises(ValueError):
            netio.set_uid("1." + "2" * 70, "Abstract Syntax Name")  # over 64 characters
    with pytest.raises(ValueError):
        netio.set_uid("", "Abstract Syntax Name", allow_empty=False)
    assert netio._uid.cache_info().currsize == 3


def test_install_makes_pynetdicoms_pdus_use_the_cached_set_uid() -> None:
    from pynetdicom import dimse_primitives, pdu_items, pdu_primitives, presentation

    netio.install()
    for module in (pdu_items, pdu_primitives, presentation, dimse_primitives):
        assert module.set_uid is netio.set_uid  # type: ignore[attr-defined]
