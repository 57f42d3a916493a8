"""The fast path's DIMSE encodings against pynetdicom's and pydicom's own (unit tests)."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import create_file_meta, decode, encode, encode_file_meta

from xraygate.core.errors import DimseCodecError, XraygateError
from xraygate.dicom_scp import dimse_codec as codec

CR = "1.2.840.10008.5.1.4.1.1.1"


def _command_set(message: C_STORE_RQ | C_STORE_RSP | C_ECHO_RQ, primitive: object) -> bytes:
    message.primitive_to_message(primitive)
    data = encode(message.command_set, True, True)
    assert data is not None
    return data


def _store_rq(message_id: int = 7, instance: str = "1.2.3.4") -> bytes:
    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = CTImageStorage
    primitive.AffectedSOPInstanceUID = instance
    primitive.Priority = 2
    primitive.DataSet = io.BytesIO(b"\x08\x00\x16\x00")
    return _command_set(C_STORE_RQ(), primitive)


LONG_UID = "1.2.826.0.1.3680043.8.498.12345678901234567890123456789012345"  # 61 characters


@pytest.mark.parametrize("instance", ["1.2.3.4", "1.2.3.45", LONG_UID])
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEG2000Lossless])
def test_file_meta_is_byte_for_byte_what_pynetdicom_writes(instance: str, syntax: str) -> None:
    """The stored object is the same whichever path received it (same sha256, same key)."""
    meta = create_file_meta(sop_class_uid=CR, sop_instance_uid=instance, transfer_syntax=syntax)
    expected = b"\x00" * 128 + b"DICM" + encode_file_meta(meta)
    assert codec.file_meta(CR, instance, syntax) == expected
    read = dcmread(io.BytesIO(expected + b"\x08\x00\x16\x00\x02\x00\x31\x00"), force=True)
    assert read.file_meta.MediaStorageSOPInstanceUID == instance


@pytest.mark.parametrize(
    ("status", "comment"), [(0x0000, ""), (0xA700, "store full"), (0xC211, "odd len")]
)
def test_store_response_is_byte_for_byte_pynetdicoms(status: int, comment: str) -> None:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 513
    primitive.AffectedSOPClassUID = CTImageStorage
    primitive.AffectedSOPInstanceUID = "1.2.3.4"
    primitive.Status = status
    if comment:
        primitive.ErrorComment = comment
    expected = _command_set(C_STORE_RSP(), primitive)
    got = codec.store_response(513, CTImageStorage, "1.2.3.4", status, comment)
    assert got == expected
    decoded = decode(io.BytesIO(got), True, True)
    assert decoded.Status == status and decoded.MessageIDBeingRespondedTo == 513


def test_store_response_comment_is_cut_to_64_characters() -> None:
    decoded = decode(
        io.BytesIO(codec.store_response(1, CTImageStorage, "1.2.3", 0xC000, "x" * 100)),
        True,
        True,
    )
    assert decoded.ErrorComment == "x" * 64


def test_parse_command_reads_a_store_request_and_an_echo() -> None:
    command = codec.parse_command(_store_rq(message_id=65535, instance="1.2.3.45"))
    assert command == codec.Command(
        field=codec.C_STORE_RQ,
        message_id=65535,
        has_dataset=True,
        sop_class_uid=CTImageStorage,
        sop_instance_uid="1.2.3.45",
    )
    echo = C_ECHO()
    echo.MessageID = 3
    parsed = codec.parse_command(_command_set(C_ECHO_RQ(), echo))
    assert (parsed.field, parsed.message_id, parsed.has_dataset) == (0x0030, 3, False)


@pytest.mark.parametrize(
    "data",
    [
        _store_rq()[:-3],  # ends inside an element's value
        _store_rq() + b"\x00\x00\x01",  # ends inside an element header
        b"\x08\x00\x16\x00\x02\x00\x00\x00",  # group 0008: not a command set
        b"\x00\x00\x00\x08\x02\x00\x00\x00\x01\x01",  # no command field
        b"\x00\x00\x00\x01\x01\x00\x00\x00\x01\x00\x00\x08\x02\x00\x00\x00\x01\x01",  # US of 1
        b"\x00\x00\x00\x01\x02\x00\x00\x00\x01\x00\x00\x08\x02\x00\x00\x00\x01\x01"
        b"\x00\x00\x02\x00\x02\x00\x00\x00\xff\xfe",  # UID not ASCII
    ],
)
def test_parse_command_refuses_what_is_no_command_set(data: bytes) -> None:
    with pytest.raises(DimseCodecError):
        codec.parse_command(data)


def test_codec_error_is_in_the_projects_tree() -> None:
    assert issubclass(codec.CodecError, XraygateError)


def test_pdv_items_split_what_pdata_pdu_joins() -> None:
    items = [(1, 0x03, _store_rq()), (1, 0x00, b"\x08\x00" * 100), (3, 0x02, b"ab")]
    pdu = codec.pdata_pdu(items)
    kind, _, length = codec.PDU_HEADER.unpack_from(pdu)
    assert (kind, length) == (0x04, len(pdu) - 6)
    got = [(c, ctl, bytes(f)) for c, ctl, f in codec.pdv_items(pdu[6:])]
    assert got == items


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00\x00\x10\x01\x03abc",  # item longer than the PDU
        b"\x00\x00\x00\x01\x01",  # item length under 2 (no room for its header)
        b"\x00\x00\x00\x04\x01\x03ab\x00\x00",  # trailing bytes: a truncated item header
    ],
)
def test_pdv_items_refuse_malformed_bodies(body: bytes) -> None:
    with pytest.raises(DimseCodecError):
        list(codec.pdv_items(body))


@pytest.mark.parametrize("max_pdu", [0, 16, 50, 96, 16384])
def test_command_pdus_respect_the_peers_maximum_and_reassemble(max_pdu: int) -> None:
    command = codec.store_response(9, CTImageStorage, "1.2.3.4", 0)
    pdus = codec.command_pdus(5, command, max_pdu)
    fragments, controls = b"", []
    for pdu in pdus:
        kind, _, length = codec.PDU_HEADER.unpack_from(pdu)
        assert kind == 0x04 and length == len(pdu) - 6
        assert max_pdu == 0 or length <= max_pdu
        [(context, control, fragment)] = list(codec.pdv_items(pdu[6:]))
        assert context == 5
        fragments += bytes(fragment)
        controls.append(control)
    assert fragments == command
    assert controls == [0x01] * (len(pdus) - 1) + [0x03]  # command; last fragment flagged
    assert max_pdu == 0 or len(pdus) == -(-len(command) // (max_pdu - 6))
