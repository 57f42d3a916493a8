"""Issue 11 item 3: decompression bombs. A 1.5 MB RLE file declaring 10000 x 10000 pixels and
a 3 MB one declaring 200 frames of 1024 x 1024 are refused by `xraygate scp` (0xA900 with a
reason) with its peak RSS bounded (measured and printed), and every decoder (inference
preprocessing, the gateway's renderer, the anonymizer's pixel step) refuses them before
decoding."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid
from pynetdicom import AE, _config, build_context

from tests.dicom_scp.conftest import sample
from tests.dicom_scp.scp_process import scp_process
from xraygate.anonymizer.pixels import decoded_pixels
from xraygate.core.dicom_limits import check_before_decode, declared_samples
from xraygate.core.errors import DeidentificationError, ImageTooLarge
from xraygate.dicom_scp.status import Status
from xraygate.gateway.views.imaging import RenderError, render_png
from xraygate.inference.preprocess import PixelDataError, decode

CR = "1.2.840.10008.5.1.4.1.1.1"
MIB = 1024  # memory figures are in KiB


def rle_zero_frame(pixels: int) -> bytes:
    """One RLE Lossless frame (one segment) of ``pixels`` zero bytes: 2 bytes per 128."""
    assert pixels % 128 == 0
    header = (1).to_bytes(4, "little") + (64).to_bytes(4, "little") + bytes(56)
    return header + b"\x81\x00" * (pixels // 128)


def rle_bomb(path: Path, rows: int, columns: int, frames: int) -> Path:
    """A CR object whose RLE pixel data is tiny and decodes to rows x columns x frames bytes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.SOPClassUID = CR
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality, ds.BodyPartExamined = "BOMB1", "CR", "CHEST"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    frame = rle_zero_frame(rows * columns)
    ds.PixelData = encapsulate([frame] * frames)
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


BOMBS = {"10000x10000": (10000, 10000, 1), "200 frames": (1024, 1024, 200)}


def send_file(port: int, path: Path) -> Dataset:
    ae = AE(ae_title="MODALITY1")
    ae.requested_contexts = [build_context(CR, RLELossless), build_context(CR)]
    assoc = ae.associate("127.0.0.1", port, ae_title="XRAYGATE")
    assert assoc.is_established
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return assoc.send_c_store(path)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        assoc.release()


def test_the_generator_makes_decodable_images(tmp_path: Path) -> None:
    """The same generator at a permitted size gives an image every decoder reads: the bombs
    below are refused by the limit, not by a broken file."""
    path = rle_bomb(tmp_path / "small.dcm", 256, 256, 3)
    small = dcmread(path)
    assert small.pixel_array.shape == (3, 256, 256) and not small.pixel_array.any()
    assert render_png(path.read_bytes())[:4] == b"\x89PNG"
    assert decoded_pixels(small).shape == (3, 256, 256)


@pytest.mark.parametrize("name", list(BOMBS))
def test_decoders_refuse_a_bomb_before_decoding(tmp_path: Path, name: str) -> None:
    path = rle_bomb(tmp_path / "bomb.dcm", *BOMBS[name])
    assert path.stat().st_size < 4 * 1024 * 1024
    ds = dcmread(path)
    assert declared_samples(ds) >= 100_000_000
    with pytest.raises(ImageTooLarge, match="image too large"):
        check_before_decode(ds, 50_000_000)
    with pytest.raises(PixelDataError, match="image too large"):
        decode(ds)
    with pytest.raises(RenderError, match="image too large"):
        render_png(path.read_bytes())
    with pytest.raises(DeidentificationError, match="image too large"):
        decoded_pixels(dcmread(path))


@pytest.mark.integration
def test_scp_refuses_bombs_with_bounded_memory(tmp_path: Path) -> None:
    bombs = {
        name: rle_bomb(tmp_path / f"{n}.dcm", *dims) for n, (name, dims) in enumerate(BOMBS.items())
    }
    with scp_process(tmp_path) as scp:
        before, _ = scp.memory_kib()
        for name, path in bombs.items():
            rsp = send_file(scp.port, path)
            print(
                f"\n{name} ({path.stat().st_size // 1024} KiB): 0x{int(rsp.Status):04X} "
                f"{rsp.get('ErrorComment', '')}"
            )
            assert int(rsp.Status) == Status.DATASET_MISMATCH
            assert "image too large" in str(rsp.ErrorComment)
        rss, peak = scp.memory_kib()
        print(
            f"SCP memory: before {before // MIB} MiB, after {rss // MIB} MiB, "
            f"peak {peak // MIB} MiB"
        )
        assert peak - before < 50 * MIB
        assert int(send_file(scp.port, sample("RG1_UNCR.dcm")).Status) == 0
