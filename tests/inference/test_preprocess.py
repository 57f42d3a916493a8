"""DICOM pixels to model input: transfer syntaxes, photometric interpretation, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian

from xraygate.core.config import Settings
from xraygate.inference import applicability
from xraygate.inference.manifest import InputSpec
from xraygate.inference.preprocess import PixelDataError, preprocess, read_dataset

SPEC = InputSpec(height=128, width=128)


def load(name: str) -> Dataset:
    return dcmread(get_testdata_file(name))


def as_monochrome2(ds: Dataset) -> Dataset:
    """The same image stored the other way round: inverted values, MONOCHROME2, mirrored VOI."""
    other = load("RG1_UNCR.dcm")
    top = (1 << int(ds.BitsStored)) - 1
    pixels = ds.pixel_array.astype(np.int32)
    other.PixelData = (top - pixels).astype(np.uint16).tobytes()
    other.PhotometricInterpretation = "MONOCHROME2"
    other.WindowCenter = top - float(ds.WindowCenter) + 1
    return other


def test_lossless_variants_give_identical_input() -> None:
    uncompressed = preprocess(load("RG1_UNCR.dcm"), SPEC)
    j2k_lossless = preprocess(load("RG1_J2KR.dcm"), SPEC)
    assert uncompressed.shape == (128, 128, 1) and uncompressed.dtype == np.float32
    assert np.array_equal(uncompressed, j2k_lossless)
    lossy = preprocess(load("RG1_J2KI.dcm"), SPEC)
    assert np.abs(uncompressed - lossy).max() < 0.01


def test_monochrome1_and_monochrome2_read_the_same() -> None:
    mono1 = load("RG1_UNCR.dcm")
    assert mono1.PhotometricInterpretation == "MONOCHROME1"
    a = preprocess(mono1, SPEC)
    b = preprocess(as_monochrome2(mono1), SPEC)
    assert np.abs(a - b).max() < 1e-5
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_output_is_display_oriented() -> None:
    image = preprocess(load("RG1_UNCR.dcm"), SPEC)[..., 0]
    lungs = image[40:90, 20:50].mean()
    spine = image[40:90, 60:68].mean()
    assert lungs < spine, "lungs (air) must be darker than the mediastinum"


def test_8_and_16_bit_and_no_window() -> None:
    ct = load("CT_small.dcm")  # signed 16-bit with rescale, no VOI window
    image = preprocess(ct, SPEC)
    assert image.shape == (128, 128, 1) and 0 <= image.min() < image.max() <= 1
    sc = load("SC_rgb_jpeg_dcmtk.dcm")
    with pytest.raises(PixelDataError, match="not grayscale"):
        preprocess(sc, SPEC)


def test_corrupt_pixel_data_is_a_pixel_data_error() -> None:
    ds = load("RG1_J2KR.dcm")
    data = bytearray(ds.PixelData)
    data[200:] = bytes(len(data) - 200)
    ds.PixelData = bytes(data)
    with pytest.raises(PixelDataError):
        preprocess(ds, SPEC)


def test_unsupported_transfer_syntax_is_a_pixel_data_error() -> None:
    ds = load("RG1_J2KR.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder
    with pytest.raises(PixelDataError):
        preprocess(ds, SPEC)


@pytest.mark.parametrize(
    ("name", "applicable", "reason"),
    [
        ("RG1_UNCR.dcm", True, ""),
        ("RG3_UNCR.dcm", False, "body part EXTREMITY is not chest"),
        ("CT_small.dcm", False, "modality CT is not a radiograph we read"),
    ],
)
def test_applicability_of_real_files(name: str, applicable: bool, reason: str) -> None:
    verdict = applicability.check(load(name), Settings())
    assert (verdict.applicable, verdict.reason) == (applicable, reason)


def test_lateral_and_for_processing_are_not_applicable() -> None:
    lateral = load("RG1_UNCR.dcm")
    lateral.ViewPosition = "LL"
    assert applicability.check(lateral, Settings()).reason == "view LL is not frontal (PA/AP)"
    raw = load("RG1_UNCR.dcm")
    raw.SOPClassUID = applicability.DX_FOR_PROCESSING
    raw.Modality = "DX"
    assert not applicability.check(raw, Settings()).applicable
    described = load("RG1_UNCR.dcm")
    del described.BodyPartExamined
    described.StudyDescription = "XR CHEST 2 VIEWS"
    assert applicability.check(described, Settings()).applicable
    del described.ViewPosition
    assert applicability.check(described, Settings()).reason == (
        "view position missing (no ViewPosition or ViewCodeSequence)"
    )


def test_voi_lut_sequence_and_modality_lut_sequence_are_applied() -> None:
    from pydicom.dataset import Dataset as Item

    ds = load("CT_small.dcm")
    del ds.RescaleSlope, ds.RescaleIntercept
    lut = Item()
    lut.LUTDescriptor = [4096, 0, 12]
    lut.LUTData = list(range(4095, -1, -1))  # an inverting VOI LUT
    ds.VOILUTSequence = [lut]
    inverted = preprocess(ds, SPEC)
    del ds.VOILUTSequence
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    plain = preprocess(ds, SPEC)
    assert np.abs((1 - plain) - inverted).max() < 0.01
    zero = load("CT_small.dcm")
    zero.RescaleSlope = 0
    with pytest.raises(PixelDataError, match="RescaleSlope is 0"):
        preprocess(zero, SPEC)


def test_deflated_object_gives_identical_input(tmp_path: Path) -> None:
    """Deflated Explicit VR Little Endian (stored by the SCP since issue 10) is read by the
    inference worker from the stored bytes exactly like the uncompressed original."""
    original = load("RG1_UNCR.dcm")
    path = tmp_path / "rg1_deflated.dcm"
    original.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    original.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    assert len(data) < len(original.PixelData)  # really deflated
    deflated = read_dataset(data)
    assert deflated.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert np.array_equal(preprocess(deflated, SPEC), preprocess(load("RG1_UNCR.dcm"), SPEC))
