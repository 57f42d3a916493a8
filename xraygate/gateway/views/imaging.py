"""DICOM to a display PNG: modality LUT, VOI LUT or window (else a percentile window),
MONOCHROME1 inverted, the first frame of multi-frame objects, downscaled to a longest side.

This is for viewing on the study page only; the model has its own preprocessing.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from xraygate.core.dicom_limits import check_before_decode
from xraygate.core.errors import DicomLimitError, XraygateError


class RenderError(XraygateError):
    """The object has no image the gateway can render."""


def render_png(data: bytes, max_side: int = 1024) -> bytes:
    """A display PNG (8-bit grey or RGB) of the DICOM object in ``data``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
            check_before_decode(ds)  # a decompression bomb is never decoded for a page
            pixels = ds.pixel_array
    except DicomLimitError as exc:
        raise RenderError(str(exc)) from exc
    except (InvalidDicomError, AttributeError, ValueError, RuntimeError, KeyError) as exc:
        raise RenderError(f"cannot decode pixel data: {type(exc).__name__}") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 3:
        image = Image.fromarray(_rgb(pixels), mode="RGB")
    else:
        image = Image.fromarray(_grey(pixels, ds, photometric), mode="L")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _grey(pixels: NDArray[Any], ds: pydicom.Dataset, photometric: str) -> NDArray[np.uint8]:
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        # the header's window or LUT decides contrast; the output range maps to black..white
        integers = np.rint(values).astype(np.int64)  # a LUT is indexed by stored integers
        values = np.asarray(apply_voi_lut(integers, ds, index=0), dtype=np.float64)
        low, high = float(values.min(initial=0.0)), float(values.max(initial=1.0))
    else:  # no VOI in the header: a robust percentile window
        low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if high <= low:
        low, high = float(values.min(initial=0.0)), float(values.max(initial=1.0))
    scaled = np.clip((values - low) / max(high - low, 1e-9), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
    return np.asarray(np.round(scaled * 255.0), dtype=np.uint8)


def _rgb(pixels: NDArray[Any]) -> NDArray[np.uint8]:
    """pydicom's ``pixel_array`` already converts YBR colour spaces to RGB."""
    if pixels.dtype != np.uint8:
        top = float(pixels.max()) or 1.0
        pixels = np.round(pixels.astype(np.float64) / top * 255.0)
    return np.asarray(pixels, dtype=np.uint8)
