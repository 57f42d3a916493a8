"""core/ingest/header.py: the header parse of the hot path."""

from __future__ import annotations

import codecs
import contextlib
import copy
from io import BytesIO
from typing import Any

import pytest
from pydicom import Dataset, dcmread, filereader
from pydicom.data import get_testdata_file
from pydicom.tag import BaseTag, Tag

from xraygate.core.errors import IngestError
from xraygate.core.ingest import header
from xraygate.core.ingest.status import Status


def test_vr_codec_is_pydicoms_own_codec_by_its_fast_name() -> None:
    """pydicom's "iso8859" and our "latin-1" name the same codec: every VR decodes alike."""
    assert filereader.default_encoding == header.VR_CODEC
    assert codecs.lookup(header.VR_CODEC).name == codecs.lookup("iso8859").name
    every_byte = bytes(range(256))
    assert every_byte.decode(header.VR_CODEC) == every_byte.decode("iso8859")


EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"


def _part10(ds: Dataset, syntax: str = EXPLICIT_LE) -> bytes:
    """``ds`` as the SCP keeps it: File Meta first, then the data set in ``syntax``."""
    ds = copy.deepcopy(ds)
    ds.file_meta.TransferSyntaxUID = syntax
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True, implicit_vr=syntax == IMPLICIT_LE)
    return out.getvalue()


def _full_ct() -> Dataset:
    """A real CT with every attribute the ingest reads given a value (sequences included)."""
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.IssuerOfPatientID = "HOSP"
    qualifiers = Dataset()
    qualifiers.UniversalEntityID = "1.2.3.4"
    qualifiers.UniversalEntityIDType = "ISO"
    ds.IssuerOfPatientIDQualifiersSequence = [qualifiers]
    ds.AccessionNumber = "ACC1"
    ds.StudyDescription = "CHEST"
    ds.ReferringPhysicianName = "Doe^Jane"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "36643-5", "LN", "XR Chest"
    request = Dataset()
    request.PlacerOrderNumberImagingServiceRequest = "ORD1"
    request.RequestedProcedureCodeSequence = [code]
    ds.RequestAttributesSequence = [request]
    ds.BodyPartExamined = "CHEST"
    ds.SeriesDescription = "PA"
    ds.NumberOfFrames = 1
    return ds


class Recording(Dataset):
    """A data set that notes every top-level element looked up in it."""

    looked_up: set[BaseTag]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, str, tuple)):
            self.looked_up.add(Tag(key))
        return super().__getitem__(key)

    def __contains__(self, name: Any) -> bool:
        with contextlib.suppress(ValueError, TypeError):
            self.looked_up.add(Tag(name))
        return super().__contains__(name)


def _received(ds: Dataset) -> header.Received:
    return header.Received(
        path=None,
        calling_aet="MODALITY",
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=EXPLICIT_LE,
    )


def _record(ds: Dataset) -> header.IndexRecord:
    received = _received(ds)
    header.validate(ds, received, 10**8)
    key = header.object_key(ds, "0" * 64)
    record = header.index_record(ds, received, key, 1, "0" * 64)
    record.instance.pop("received_at")
    return record


def test_the_ingest_reads_no_element_outside_header_tags() -> None:
    """A data set received in memory keeps only HEADER_KEYWORDS: an attribute read by
    validate/object_key/index_record and missing there would silently index as empty."""
    ds = Recording(_full_ct())
    ds.looked_up = set()
    _record(ds)
    read = {Tag(t) for t in ds.looked_up if Tag(t).group != 0x0002}
    missing = read - {Tag(k) for k in header.HEADER_KEYWORDS}
    assert not missing, sorted(str(t) for t in missing)
    assert len(read) > 20  # the recording saw the lookups


@pytest.mark.parametrize("syntax", [EXPLICIT_LE, IMPLICIT_LE])
def test_record_from_memory_is_the_record_from_the_whole_data_set(syntax: str) -> None:
    ds = _full_ct()
    data = _part10(ds, syntax)
    partial = header.read_header_bytes(data, syntax)
    assert len(partial) < 40 < len(ds)  # only the header's elements were kept
    assert _record(partial) == _record(dcmread(BytesIO(data)))
    for keyword in header.HEADER_KEYWORDS:
        assert (keyword in partial) == (keyword in ds), keyword


def _cut(data: bytes, tag: str) -> bytes:
    """``data`` cut 2 bytes into the value of its top-level element ``tag`` (and everything
    after it)."""
    ds = dcmread(BytesIO(data))
    element = ds[tag]
    offset = 132 + 12 + int.from_bytes(data[140:144], "little")
    from pydicom.filereader import read_dataset

    stream = BytesIO(data)
    stream.seek(offset)
    raw = read_dataset(stream, False, True, specific_tags=[element.tag]).get_item(element.tag)
    return data[: raw.value_tell + 2]


@pytest.mark.parametrize("tag", ["PixelData", "PatientName", "ImagePositionPatient"])
def test_an_element_cut_short_is_refused_whether_kept_or_not(tag: str) -> None:
    """PatientName is kept (its value is short), PixelData and ImagePositionPatient are walked
    over (the walk ends past the data): all three are a truncated data set."""
    data = _part10(_full_ct())
    with pytest.raises(IngestError) as info:
        header.read_header_bytes(_cut(data, tag), EXPLICIT_LE)
    assert info.value.status == Status.CANNOT_UNDERSTAND
    assert "truncated" in info.value.comment


def test_a_data_set_with_no_element_is_empty() -> None:
    data = _part10(_full_ct())
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")
    with pytest.raises(IngestError) as info:
        header.read_header_bytes(data[:meta_end], EXPLICIT_LE)
    assert "empty" in info.value.comment
    only_other = Dataset()
    only_other.ImageComments = "none of the header's attributes"
    only_other.file_meta = _full_ct().file_meta
    ours = header.read_header_bytes(_part10(only_other), EXPLICIT_LE)  # not empty: walked
    assert len(ours) == 0
