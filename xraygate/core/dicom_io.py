"""Reading DICOM files safely: the byte-level facts and the truncation checks every reader needs.

pydicom stops quietly at the end of a truncated file: a value comes back shorter than its
declared length (or, deferred, is never read), and a missing pixel data tail goes unnoticed
until the pixels are decoded. A reader that stores or copies bytes it has not decoded (the
SCP's ingest, the anonymizer's pixel pass-through) checks with these helpers instead:

- :func:`truncation`: every top-level value of a parsed dataset was read whole;
- :func:`element_end`: where an element (an encapsulated one by walking its items) ends;
- :func:`encapsulated_terminated` / :func:`delimiter_near_end`: encapsulated pixel data ends
  with its sequence delimiter. The anonymizer walks the items (it copies the element verbatim
  and must know its exact end); the SCP, which only stores the file, looks for the delimiter in
  the file's last 64 KiB without parsing the fragments.
- :func:`read_deflated_header`: a Deflated Explicit VR Little Endian data set, inflated as a
  stream into a temporary file (bounded: a deflate bomb stops at ``limit`` bytes) and parsed
  with deferred values, so that its offsets are those of the inflated stream and the
  truncation check compares them with the inflated size, not the compressed one.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.filereader import read_dataset, read_file_meta_info

from xraygate.core.errors import DicomLimitError

UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA_TAG = 0x7FE00010
# Tags as they appear in a little-endian file.
PIXEL_DATA_BYTES = b"\xe0\x7f\x10\x00"
ITEM_BYTES = b"\xfe\xff\x00\xe0"
SEQUENCE_DELIMITER_BYTES = b"\xfe\xff\xdd\xe0"
#: The Sequence Delimitation Item: its tag and a zero length.
SEQUENCE_DELIMITATION_ITEM = SEQUENCE_DELIMITER_BYTES + b"\x00\x00\x00\x00"
_TAIL_SCAN = 65536
_CHUNK = 1 << 20
#: Preamble, "DICM", and the File Meta Information Group Length element (explicit VR UL).
_GROUP_LENGTH_END = 128 + 4 + 12

ReadAt = Callable[[int, int], bytes]  # (offset, count) -> the bytes there (fewer at the end)


def incomplete(raw: object, size: int, *, deferred: bool) -> bool:
    """A raw element whose value is shorter than its declared length: read short (pydicom
    returns what the file had), or, ``deferred`` (not read), declared to run past ``size``."""
    if not isinstance(raw, RawDataElement) or raw.length == UNDEFINED_LENGTH:
        return False
    if deferred:
        return bool(raw.value_tell + raw.length > size)
    return isinstance(raw.value, bytes) and len(raw.value) != raw.length


def truncation(
    ds: Dataset, size: int, *, partial_header: bool = True, deferred: bool = False
) -> str | None:
    """Why the top-level elements of ``ds``, parsed from ``size`` bytes, are not whole (None
    when they are): a value that runs past the end or, with ``partial_header``, a few bytes of
    an element header left after the last element.

    ``deferred``: ``ds`` was read with ``defer_size``; every value is checked by its position,
    without reading it (the SCP). Without it, values are checked by their length as read
    (right for deflated files too, where positions are those of the inflated stream), and
    elements pydicom holds no value for (empty ones) are converted on the way and take no part
    in the check (the anonymizer)."""
    if not partial_header:  # the SCP's check, once per instance: kept lean
        for raw in ds.values():  # as stored: a deferred value stays unread
            if isinstance(raw, RawDataElement) and incomplete(raw, size, deferred=deferred):
                return f"element {raw.tag} is incomplete"
        return None
    end = 0
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=deferred)
        if incomplete(raw, size, deferred=deferred):
            return f"element {tag} is incomplete"
        if isinstance(raw, RawDataElement) and raw.length != UNDEFINED_LENGTH:
            end = max(end, raw.value_tell + raw.length)
    if partial_header and end and 0 < size - end < 12 and end == _last_end(ds, deferred):
        return "partial element at the end"
    return None


def _last_end(ds: Dataset, deferred: bool) -> int:
    raw = ds.get_item(max(ds.keys()), keep_deferred=deferred)
    if isinstance(raw, RawDataElement) and raw.length != UNDEFINED_LENGTH:
        return int(raw.value_tell + raw.length)
    return -1


def element_end(read_at: ReadAt, size: int, start: int, *, explicit: bool) -> int:
    """End offset of the little-endian element at ``start`` (an undefined length is followed
    item by item to its sequence delimiter); -1 when it does not end inside ``size`` bytes."""
    head = read_at(start, 12)
    length = int.from_bytes(head[8:12] if explicit else head[4:8], "little")
    pos = start + (12 if explicit else 8)
    if length != UNDEFINED_LENGTH:
        return pos + length
    while pos + 8 <= size:
        item = read_at(pos, 8)
        tag, item_len = item[:4], int.from_bytes(item[4:8], "little")
        pos += 8
        if tag == SEQUENCE_DELIMITER_BYTES:
            return pos
        if tag != ITEM_BYTES or item_len == UNDEFINED_LENGTH:
            return -1
        pos += item_len
    return -1


def encapsulated_terminated(ds: Dataset, data: bytes) -> bool:
    """False when ``ds`` (parsed from ``data``) has encapsulated pixel data whose items do not
    reach a sequence delimiter inside ``data``."""
    raw = ds.get_item(PIXEL_DATA_TAG)
    if not (isinstance(raw, RawDataElement) and raw.length == UNDEFINED_LENGTH and raw.value_tell):
        return True
    explicit = not ds.original_encoding[0]
    start = raw.value_tell - (12 if explicit else 8)
    return element_end(_bytes_at(data), len(data), start, explicit=explicit) >= 0


def delimiter_near_end(path: Path, size: int) -> bool:
    """The file's last 64 KiB hold a Sequence Delimitation Item (encapsulated data ended)."""
    with path.open("rb") as fh:
        fh.seek(max(0, size - _TAIL_SCAN))
        return delimiter_in_tail(fh.read())


def delimiter_in_tail(data: bytes) -> bool:
    """:func:`delimiter_near_end` for an object in memory."""
    return SEQUENCE_DELIMITATION_ITEM in data[-_TAIL_SCAN:]


def _bytes_at(data: bytes) -> ReadAt:
    return lambda offset, count: data[offset : offset + count]


def dataset_offset(path: Path) -> int:
    """Where the data set starts in a Part 10 file: after the File Meta group, whose length
    the (0002,0000) element gives (ValueError when the file does not start that way)."""
    with path.open("rb") as fh:
        return dataset_offset_in(fh.read(_GROUP_LENGTH_END))


def dataset_offset_in(head: bytes) -> int:
    """:func:`dataset_offset` of a Part 10 object whose first bytes are ``head``."""
    if len(head) < _GROUP_LENGTH_END or head[128:132] != b"DICM":
        raise ValueError("not a DICOM Part 10 file")
    if head[132:138] != b"\x02\x00\x00\x00UL" or head[138:140] != b"\x04\x00":
        raise ValueError("the File Meta group has no group length")
    return _GROUP_LENGTH_END + int.from_bytes(head[140:144], "little")


def inflate(path: Path, start: int, out: BinaryIO, limit: int) -> int:
    """Inflate the raw deflate stream of ``path`` from ``start`` into ``out``, a chunk at a
    time; the inflated size. DicomLimitError past ``limit`` bytes (0 = no limit), ValueError
    when the stream ends early, zlib.error when it is corrupt."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    with path.open("rb") as fh:
        fh.seek(start)
        while not inflater.eof and (chunk := fh.read(_CHUNK)):
            while chunk and not inflater.eof:
                data = inflater.decompress(chunk, _CHUNK)
                total += len(data)
                if limit and total > limit:
                    raise DicomLimitError(f"deflated data set inflates past {limit} bytes")
                out.write(data)
                chunk = inflater.unconsumed_tail
    if not inflater.eof:
        raise ValueError("deflated data set is truncated")
    return total


def read_deflated_header(path: Path, limit: int) -> tuple[Dataset, int]:
    """The data set of a Deflated Explicit VR LE file, values over 4 KiB deferred (and not
    readable: the inflated copy is gone), with its inflated size for :func:`truncation`."""
    meta = read_file_meta_info(path)
    with tempfile.TemporaryFile() as inflated:
        size = inflate(path, dataset_offset(path), inflated, limit)
        inflated.seek(0)
        ds = read_dataset(inflated, is_implicit_VR=False, is_little_endian=True, defer_size=4096)
    ds.file_meta = meta
    return ds, size


# --- our own display objects (pacs/ makes them; nobody may learn from them) --------------------
#: Derivation Description of the "AI key image" Secondary Capture made by ``pacs/``.
AI_KEY_IMAGE_DERIVATION = "xraygate AI key image: result banner burned into a copy; display only"


def is_ai_display_object(ds: Dataset) -> bool:
    """A display object we derived from a result (the key image): never a training input, even
    when a PACS routes it back to us."""
    return str(ds.get("DerivationDescription", "") or "") == AI_KEY_IMAGE_DERIVATION
