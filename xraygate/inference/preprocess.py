"""DICOM pixels -> the model's input: a float32 (H, W, 1) image in [0, 1], display-oriented
(air dark, bone bright), whatever the stored bits, transfer syntax or photometric interpretation.

Steps, all parameterised by the model manifest's ``input`` spec:

1. decode the stored values (pydicom with the pylibjpeg / gdcm plugins; any accepted syntax);
2. reduce to the model's size by area averaging (fast, and anti-aliased), on the raw values;
3. apply the Modality LUT (sequence, or rescale slope/intercept), then the VOI LUT sequence or
   window from the header, or, where the header has none, a percentile window;
4. invert MONOCHROME1 so that every image reads as MONOCHROME2.

Averaging before the LUTs keeps the cost of a 7 MB radiograph to one pass; images are reduced to
the model's (square) input without keeping the aspect ratio, as the training images were.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from xraygate.core.dicom_limits import check_before_decode
from xraygate.core.errors import DicomLimitError, InferenceError
from xraygate.inference.manifest import InputSpec

Image = NDArray[np.float32]


class PixelDataError(InferenceError):
    """The pixel data cannot be decoded (corrupt, truncated or unsupported syntax)."""


def read_dataset(data: bytes) -> Dataset:
    try:
        return dcmread(BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, KeyError) as exc:
        raise PixelDataError(f"cannot parse DICOM: {type(exc).__name__}") from exc


def decode(ds: Dataset) -> NDArray[np.generic]:
    """The stored pixel values of the first frame, as a 2-D array (never decoded when the
    header declares more than ``XRAYGATE_MAX_IMAGE_PIXELS`` samples)."""
    try:
        check_before_decode(ds)
    except DicomLimitError as exc:
        raise PixelDataError(str(exc)) from exc
    try:
        pixels = ds.pixel_array
    except NotImplementedError as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise PixelDataError(f"no decoder for transfer syntax {syntax}") from exc
    except Exception as exc:  # decoders raise many types for corrupt data
        raise PixelDataError(f"pixel data cannot be decoded: {type(exc).__name__}") from exc
    if pixels.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        pixels = pixels[0]
    if pixels.ndim != 2:
        raise PixelDataError("only single-channel images can be scored")
    return pixels


def area_resize(pixels: NDArray[np.generic], height: int, width: int) -> NDArray[np.float32]:
    """Average blocks down to at most 2x the target, then bilinear-free block mean to size."""
    src = np.asarray(pixels, dtype=np.float32)
    fy, fx = max(1, src.shape[0] // height), max(1, src.shape[1] // width)
    if fy > 1 or fx > 1:
        h, w = src.shape[0] // fy, src.shape[1] // fx
        src = src[: h * fy, : w * fx].reshape(h, fy, w, fx).mean(axis=(1, 3), dtype=np.float32)
    if src.shape == (height, width):
        return src
    rows = np.linspace(0, src.shape[0] - 1, height).round().astype(np.intp)
    cols = np.linspace(0, src.shape[1] - 1, width).round().astype(np.intp)
    return np.ascontiguousarray(src[np.ix_(rows, cols)])


def _first(value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def modality(values: NDArray[np.float32], ds: Dataset) -> NDArray[np.float32]:
    """Modality LUT: a Modality LUT Sequence if present, else rescale slope and intercept."""
    if "ModalityLUTSequence" in ds:
        mapped = apply_modality_lut(np.rint(values).astype(np.int64), ds)
        return np.asarray(mapped, dtype=np.float32)
    slope = _first(ds.get("RescaleSlope"))
    intercept = _first(ds.get("RescaleIntercept"))
    if slope == 0:
        raise PixelDataError("RescaleSlope is 0: pixel values are meaningless")
    scaled: NDArray[np.float32] = values * np.float32(1.0 if slope is None else slope)
    return scaled + np.float32(intercept or 0.0)


def window(values: NDArray[np.float32], ds: Dataset, spec: InputSpec) -> NDArray[np.float32]:
    """VOI to [0, 1]: the header's VOI LUT Sequence or window, else percentiles."""
    use_header = spec.windowing == "voi-or-percentile"
    if use_header and "VOILUTSequence" in ds:
        lut = ds.VOILUTSequence[0]
        bits = int(lut.LUTDescriptor[2])
        mapped = apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0)
        return np.clip(np.asarray(mapped, dtype=np.float32) / ((1 << bits) - 1), 0.0, 1.0)
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if use_header and center is not None and width and width > 1:
        low = center - 0.5 - (width - 1) / 2
        high = center - 0.5 + (width - 1) / 2
    else:
        low, high = (float(v) for v in np.percentile(values, spec.percentiles))
    if high <= low:
        return np.zeros_like(values)
    out: NDArray[np.float32] = np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)
    return out


def preprocess(ds: Dataset, spec: InputSpec) -> Image:
    """The model input for one dataset: (H, W, 1) float32 in [0, 1], MONOCHROME2 orientation."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise PixelDataError(f"photometric interpretation {photometric} is not grayscale")
    small = area_resize(decode(ds), spec.height, spec.width)
    image = window(modality(small, ds), ds, spec)
    if photometric == "MONOCHROME1":
        image = 1.0 - image
    return image[..., np.newaxis]
