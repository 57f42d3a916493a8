"""The few DICOM encodings the C-STORE fast path needs, written out (PS3.7 E, PS3.8 9.3.5).

- A command set (group 0000, always Implicit VR Little Endian): :func:`parse_command` reads
  the elements a C-STORE-RQ carries; :func:`store_response` encodes the C-STORE-RSP.
- P-DATA-TF: :func:`pdv_items` splits a PDU body into presentation data values;
  :func:`command_pdus` frames a command set into PDUs no longer than the peer accepts.
- The File Meta Information (group 0002, Explicit VR Little Endian) written in front of a
  received data set: :func:`file_meta`, the same bytes pydicom writes for pynetdicom.

Every parser raises :class:`CodecError` on malformed input; the fast path then leaves the
message to pynetdicom (or aborts, see :mod:`.fastpath`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from xraygate.core.errors import DimseCodecError

CodecError = DimseCodecError  # the name used in this package

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
NO_DATASET = 0x0101

# Command elements (0000,eeee) read from a request.
AFFECTED_SOP_CLASS = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
PRIORITY = 0x0700
DATASET_TYPE = 0x0800
AFFECTED_SOP_INSTANCE = 0x1000

_ELEMENT = struct.Struct("<HHI")
_ITEM = struct.Struct(">IBB")
PDU_HEADER = struct.Struct(">BBI")


@dataclass(frozen=True)
class Command:
    """The parts of a DIMSE command set the fast path looks at."""

    field: int
    message_id: int
    has_dataset: bool
    sop_class_uid: str = ""
    sop_instance_uid: str = ""


def _us(value: bytes) -> int:
    if len(value) != 2:
        raise CodecError("US element of the wrong length")
    return int.from_bytes(value, "little")


def _uid(value: bytes) -> str:
    try:
        return value.rstrip(b"\x00 ").decode("ascii")
    except UnicodeDecodeError as exc:
        raise CodecError("UID is not ASCII") from exc


def parse_command(data: bytes | bytearray) -> Command:
    """The command set's field, message ID, data set presence and affected SOP UIDs."""
    elements: dict[int, bytes] = {}
    offset, end = 0, len(data)
    while offset < end:
        if offset + 8 > end:
            raise CodecError("command set ends inside an element header")
        group, element, length = _ELEMENT.unpack_from(data, offset)
        offset += 8
        if group != 0x0000 or length > end - offset:
            raise CodecError("not a command set element")
        elements[element] = bytes(data[offset : offset + length])
        offset += length
    try:
        field = _us(elements[COMMAND_FIELD])
        dataset_type = _us(elements[DATASET_TYPE])
    except KeyError as exc:
        raise CodecError("command set without its command field") from exc
    message_id = _us(elements[MESSAGE_ID]) if MESSAGE_ID in elements else -1
    return Command(
        field=field,
        message_id=message_id,
        has_dataset=dataset_type != NO_DATASET,
        sop_class_uid=_uid(elements.get(AFFECTED_SOP_CLASS, b"")),
        sop_instance_uid=_uid(elements.get(AFFECTED_SOP_INSTANCE, b"")),
    )


def _element(element: int, value: bytes) -> bytes:
    return _ELEMENT.pack(0x0000, element, len(value)) + value


def _padded_uid(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _padded_text(text: str) -> bytes:
    raw = text.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def store_response(
    message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int, comment: str = ""
) -> bytes:
    """A C-STORE-RSP command set (Implicit VR Little Endian, ascending tags, group length)."""
    body = b"".join(
        [
            _element(AFFECTED_SOP_CLASS, _padded_uid(sop_class_uid)),
            _element(COMMAND_FIELD, C_STORE_RSP.to_bytes(2, "little")),
            _element(0x0120, message_id.to_bytes(2, "little")),
            _element(DATASET_TYPE, NO_DATASET.to_bytes(2, "little")),
            _element(0x0900, status.to_bytes(2, "little")),
            _element(0x0902, _padded_text(comment[:64])) if comment else b"",
            _element(AFFECTED_SOP_INSTANCE, _padded_uid(sop_instance_uid)),
        ]
    )
    return _element(0x0000, len(body).to_bytes(4, "little")) + body


def pdv_items(body: bytes | bytearray | memoryview) -> Iterator[tuple[int, int, memoryview]]:
    """The (context ID, message control header, fragment) of each PDV in a P-DATA-TF body."""
    view = memoryview(body)
    offset, end = 0, len(view)
    while offset < end:
        if offset + 6 > end:
            raise CodecError("P-DATA-TF ends inside a PDV item header")
        length, context_id, control = _ITEM.unpack_from(view, offset)
        if length < 2 or offset + 4 + length > end:
            raise CodecError("PDV item length does not fit the PDU")
        yield context_id, control, view[offset + 6 : offset + 4 + length]
        offset += 4 + length


def command_pdus(context_id: int, command: bytes, max_pdu: int) -> list[bytes]:
    """``command`` as P-DATA-TF PDUs of at most ``max_pdu`` bytes each (0: no limit)."""
    room = len(command) if max_pdu <= 0 else max(max_pdu - 6, 1)
    pdus = []
    for start in range(0, len(command), room):
        fragment = command[start : start + room]
        last = start + room >= len(command)
        item = _ITEM.pack(len(fragment) + 2, context_id, 0x03 if last else 0x01) + fragment
        pdus.append(PDU_HEADER.pack(0x04, 0, len(item)) + item)
    return pdus


def pdata_pdu(items: list[tuple[int, int, bytes]]) -> bytes:
    """A P-DATA-TF PDU holding ``items`` (context ID, control header, fragment)."""
    body = b"".join(_ITEM.pack(len(data) + 2, cid, ctl) + data for cid, ctl, data in items)
    return PDU_HEADER.pack(0x04, 0, len(body)) + body


def _meta_element(group_element: int, vr: bytes, value: bytes) -> bytes:
    tag = struct.pack("<HH", 0x0002, group_element)
    if vr == b"OB":
        return tag + vr + b"\x00\x00" + len(value).to_bytes(4, "little") + value
    return tag + vr + len(value).to_bytes(2, "little") + value


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group, as pynetdicom writes them."""
    body = b"".join(
        [
            _meta_element(0x0001, b"OB", b"\x00\x01"),
            _meta_element(0x0002, b"UI", _padded_uid(sop_class_uid)),
            _meta_element(0x0003, b"UI", _padded_uid(sop_instance_uid)),
            _meta_element(0x0010, b"UI", _padded_uid(transfer_syntax)),
            _meta_element(0x0012, b"UI", _padded_uid(str(PYNETDICOM_IMPLEMENTATION_UID))),
            _meta_element(0x0013, b"SH", _padded_text(PYNETDICOM_IMPLEMENTATION_VERSION)),
        ]
    )
    length = _meta_element(0x0000, b"UL", len(body).to_bytes(4, "little"))
    return b"\x00" * 128 + b"DICM" + length + body
