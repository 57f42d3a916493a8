"""The pure header checks of core/dicom_limits.py and the bounded inflate of core/dicom_io.py."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from xraygate.core.dicom_io import dataset_offset, inflate, read_deflated_header, truncation
from xraygate.core.dicom_limits import (
    HEADER_MARGIN_BYTES,
    check_image_size,
    check_uid,
    declared_samples,
    max_inflated_bytes,
    uid_problem,
)
from xraygate.core.errors import DicomLimitError, ImageTooLarge, InvalidUID


def image(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_declared_samples_multiplies_rows_columns_frames_and_samples() -> None:
    assert declared_samples(image(Rows=2000, Columns=2500)) == 5_000_000
    assert declared_samples(image(Rows=10, Columns=10, NumberOfFrames=200)) == 20_000
    assert declared_samples(image(Rows=10, Columns=10, SamplesPerPixel=3)) == 300
    assert declared_samples(image(Rows=10, Columns=10, NumberOfFrames="")) == 100
    assert declared_samples(Dataset()) == 0, "no image, nothing to bound"


@pytest.mark.parametrize("limit,refused", [(99, True), (100, False), (0, False)])
def test_limit_is_inclusive_and_zero_turns_it_off(limit: int, refused: bool) -> None:
    ds = image(Rows=10, Columns=10)
    if refused:
        with pytest.raises(ImageTooLarge, match="100 samples, limit 99"):
            check_image_size(ds, limit)
    else:
        check_image_size(ds, limit)


def test_unparseable_or_negative_counts_are_refused() -> None:
    frames = image(Rows=1, Columns=1)
    frames[0x00280008] = RawDataElement(Tag(0x00280008), "IS", 2, b"1A", 0, False, True)
    with pytest.raises(ImageTooLarge, match="NumberOfFrames is not an integer"):
        check_image_size(frames, 10)
    ds = image(Rows=1, Columns=1)
    ds.add_new(0x00280008, "IS", "-5")
    with pytest.raises(ImageTooLarge, match="negative"):
        check_image_size(ds, 10)


def test_default_limit_admits_the_largest_real_radiographs() -> None:
    from xraygate.core.config import Settings

    limit = Settings().max_image_pixels
    check_image_size(image(Rows=4300, Columns=5300), limit)  # 43 x 53 cm DR detector at 100 um
    check_image_size(
        dcmread(str(get_testdata_file("RG1_UNCR.dcm")), stop_before_pixels=True), limit
    )
    with pytest.raises(ImageTooLarge):
        check_image_size(image(Rows=10000, Columns=10000), limit)


@pytest.mark.parametrize(
    "value", ["1.2.840.10008.5.1.4.1.1.1", "0", "1.2.826.0.1.3680043.2.01.7", "2." + "9" * 62]
)
def test_valid_uids(value: str) -> None:
    assert uid_problem(value) is None
    assert check_uid(value, "StudyInstanceUID") == value


@pytest.mark.parametrize(
    "value,problem",
    [
        ("", "is empty"),
        ("1.2/../3", "digits separated"),
        ("1..2", "digits separated"),
        (".1.2", "digits separated"),
        ("1.2.", "digits separated"),
        ("1.2 ", "digits separated"),
        ("1.2\x00", "digits separated"),
        ("1." + "2" * 63, "longer than 64"),
        (None, "not text"),
    ],
)
def test_invalid_uids_name_the_attribute_not_the_value(value: object, problem: str) -> None:
    assert problem in str(uid_problem(value))
    with pytest.raises(InvalidUID) as raised:
        check_uid(value, "SeriesInstanceUID")
    assert str(raised.value).startswith("SeriesInstanceUID ")
    assert not value or str(value) not in str(raised.value)


def test_inflated_limit_follows_the_pixel_limit() -> None:
    assert max_inflated_bytes(0) == 0
    assert max_inflated_bytes(1000) == 8000 + HEADER_MARGIN_BYTES


def deflated_file(tmp_path: Path, payload: bytes) -> tuple[Path, int]:
    src = Path(str(get_testdata_file("image_dfl.dcm")))
    start = dataset_offset(src)
    path = tmp_path / "x.dcm"
    squeezer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    path.write_bytes(src.read_bytes()[:start] + squeezer.compress(payload) + squeezer.flush())
    return path, start


def test_inflate_is_bounded_and_detects_truncation(tmp_path: Path) -> None:
    path, start = deflated_file(tmp_path, bytes(10 * 1024 * 1024))
    assert path.stat().st_size < 64 * 1024
    assert inflate(path, start, io.BytesIO(), 0) == 10 * 1024 * 1024
    sink = io.BytesIO()
    with pytest.raises(DicomLimitError, match="inflates past"):
        inflate(path, start, sink, 3 * 1024 * 1024)
    assert len(sink.getvalue()) <= 3 * 1024 * 1024, "stops as soon as the limit is passed"
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="truncated"):
        inflate(cut, start, io.BytesIO(), 0)


def test_deflated_header_offsets_are_those_of_the_inflated_stream() -> None:
    path = Path(str(get_testdata_file("image_dfl.dcm")))
    ds, size = read_deflated_header(path, 0)
    assert size > path.stat().st_size, "inflated is larger than the file"
    assert truncation(ds, size, partial_header=False, deferred=True) is None
    # the old check (inflated offsets against the compressed size) called it truncated
    assert truncation(ds, path.stat().st_size, partial_header=False, deferred=True)
    assert ds.SOPInstanceUID == dcmread(path).SOPInstanceUID
