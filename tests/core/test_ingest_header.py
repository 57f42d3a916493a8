"""core/ingest/header.py: the header parse of the hot path."""

from __future__ import annotations

import codecs
from io import BytesIO

from pydicom import dcmread, filereader
from pydicom.data import get_testdata_file

from xraygate.core.ingest import header


def test_vr_codec_is_pydicoms_own_codec_by_its_fast_name() -> None:
    """pydicom's "iso8859" and our "latin-1" name the same codec: every VR decodes alike."""
    assert filereader.default_encoding == header.VR_CODEC
    assert codecs.lookup(header.VR_CODEC).name == codecs.lookup("iso8859").name
    every_byte = bytes(range(256))
    assert every_byte.decode(header.VR_CODEC) == every_byte.decode("iso8859")


def test_header_from_memory_is_the_header_from_the_file() -> None:
    """Every element of a real CT (explicit VR) parsed from memory as pydicom reads the file."""
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    with open(path, "rb") as f:
        data = f.read()
    ours = header.read_header_bytes(data, "1.2.840.10008.1.2.1")
    theirs = dcmread(BytesIO(data))
    assert len(ours) == len(theirs) == 258
    for element in theirs:
        assert ours[element.tag].VR == element.VR
        assert ours[element.tag].value == element.value
