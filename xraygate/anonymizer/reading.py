"""Reading the anonymizer's input: a DICOM file parsed up to its pixel data, whose bytes are
then copied as they are (never decoded unless they must be cleaned).

:func:`read_split` parses everything but the pixel data of a little-endian, non-deflated file
and locates the Pixel Data element's bytes (and any elements after it); anything unusual falls
back to :func:`read`, a full parse. Either way a truncated or malformed file is
:class:`~xraygate.core.errors.UnparseableInput` (the byte-level checks are
:mod:`xraygate.core.dicom_io`'s).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

from xraygate.core.dicom_io import (
    PIXEL_DATA_BYTES,
    PIXEL_DATA_TAG,
    element_end,
    encapsulated_terminated,
    truncation,
)
from xraygate.core.errors import UnparseableInput

_NO_SPLIT = {DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian}


@dataclass(frozen=True)
class FileTail:
    """Bytes ``[start, start + size)`` of an input file, copied as they are."""

    path: Path
    start: int
    size: int

    def read(self) -> bytes:
        with self.path.open("rb") as fh:
            fh.seek(self.start)
            return fh.read(self.size)

    def copy_to(self, out: BinaryIO) -> None:
        out.flush()
        with self.path.open("rb") as src:
            offset, left = self.start, self.size
            try:
                while left > 0:  # kernel-side copy, no pass through user space
                    done = os.copy_file_range(src.fileno(), out.fileno(), left, offset)
                    if done <= 0:
                        break
                    offset, left = offset + done, left - done
            except OSError:
                pass
            if left > 0:
                src.seek(offset)
                out.seek(0, 2)
                out.write(src.read(left))


class Source:
    """The input: bytes in memory, or a file read only up to its pixel data."""

    def __init__(self, data: bytes | None = None, path: Path | None = None) -> None:
        self.data, self.path = data, path
        if data is not None:
            self.fp: BinaryIO = io.BytesIO(data)
            self.size = len(data)
        else:
            assert path is not None
            self.fp = path.open("rb")
            self.size = self.fp.seek(0, 2)
            self.fp.seek(0)

    def full(self) -> bytes:
        if self.data is None:
            self.fp.seek(0)
            self.data = self.fp.read()
        return self.data

    def at(self, offset: int, count: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + count]
        self.fp.seek(offset)
        return self.fp.read(count)

    def tail(self, start: int, end: int) -> bytes | memoryview | FileTail:
        if self.path is not None:
            return FileTail(self.path, start, end - start)
        assert self.data is not None
        return memoryview(self.data)[start:end]

    def close(self) -> None:
        self.fp.close()


@dataclass
class Split:
    ds: Dataset  # everything before the pixel data, or the full dataset
    span: tuple[int, int] | None = None  # the raw Pixel Data element, copied as it is
    trailer: Dataset | None = None  # elements after it (padding, signatures), de-identified


def read_split(source: Source) -> Split:
    """Parse everything but the pixel data and locate its bytes in a little-endian,
    non-deflated file; otherwise (or when anything looks wrong) parse the full file."""
    try:
        ds = dcmread(source.fp, stop_before_pixels=True)
        start = source.fp.tell()
    except Exception:
        return Split(read(source.full()))
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None or syntax in _NO_SPLIT or source.at(start, 4) != PIXEL_DATA_BYTES:
        return Split(read(source.full()))
    implicit = bool(ds.original_encoding[0])
    end = element_end(source.at, source.size, start, explicit=not implicit)
    if end < 0 or end > source.size:  # a truncated pixel element: the full path decides
        return Split(read(source.full()))
    trailer = None
    if end < source.size:
        try:
            trailer = read_dataset(io.BytesIO(source.at(end, source.size - end)), implicit, True)
            _check_complete(trailer, source.size - end)
            for tag in list(trailer.keys()):
                trailer[tag]
        except UnparseableInput:
            raise
        except Exception:
            return Split(read(source.full()))
        if not trailer or min(trailer.keys()) <= PIXEL_DATA_TAG:
            return Split(read(source.full()))
    _validate(ds, source.size, header_end=start)
    return Split(ds, (start, end), trailer)


def encode_trailer(trailer: Dataset, ds: Dataset) -> bytes:
    """The trailing elements in the dataset's encoding."""
    if not trailer:
        return b""
    fp = DicomBytesIO()
    fp.is_implicit_VR = bool(ds.original_encoding[0])
    fp.is_little_endian = True
    write_dataset(fp, trailer)
    return fp.getvalue()


def read(data: bytes) -> Dataset:
    """Parse a DICOM file (File Meta required, preamble tolerated missing); anything else,
    including a truncated file, is unparseable input."""
    try:
        try:
            ds = dcmread(io.BytesIO(data))
        except InvalidDicomError:  # no preamble/prefix: accept only with a File Meta group
            ds = dcmread(io.BytesIO(data), force=True)
        _validate(ds, len(data))
        if not encapsulated_terminated(ds, data):
            raise UnparseableInput("truncated file: encapsulated pixel data not terminated")
    except UnparseableInput:
        raise
    except Exception as exc:  # pydicom raises many types for bad input
        raise UnparseableInput(f"not a readable DICOM file: {type(exc).__name__}: {exc}") from exc
    return ds


def _validate(ds: Dataset, size: int, header_end: int | None = None) -> None:
    if "TransferSyntaxUID" not in ds.file_meta:
        raise UnparseableInput("no File Meta Information (transfer syntax unknown)")
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if not str(ds.get(keyword, "") or ""):
            raise UnparseableInput(f"no {keyword}")
    _check_complete(ds, size if header_end is None else header_end)


def _check_complete(ds: Dataset, size: int) -> None:
    reason = truncation(ds, size)
    if reason:
        raise UnparseableInput(f"truncated file: {reason}")
