"""DICOM to a display PNG: modality LUT, VOI LUT or window (else a percentile window),
MONOCHROME1 inverted, the first frame of multi-frame objects, downscaled to a longest side.

The study page's viewer asks for other windows: an explicit centre and width (in modality
values, e.g. Hounsfield units on CT), or a named preset. On CT the presets are the usual HU
windows; projection radiographs have no calibrated scale, so there a preset is a part of the
image's own value range (0.5th to 99.5th percentile), counted from dark to bright as displayed
(lung: the darker 60 %, soft tissue: the middle, bone: the brightest 40 %).

This is for viewing only; the model has its own preprocessing. Objects declaring more pixels
than ``XRAYGATE_MAX_IMAGE_PIXELS`` are never decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from xraygate.core.dicom_limits import check_before_decode
from xraygate.core.errors import DicomLimitError, XraygateError

Preset = Literal["default", "lung", "soft-tissue", "bone"]
PRESETS: tuple[Preset, ...] = ("default", "lung", "soft-tissue", "bone")
CT_PRESETS: dict[str, tuple[float, float]] = {  # centre, width in HU
    "lung": (-600.0, 1500.0),
    "soft-tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
}
RELATIVE_PRESETS: dict[str, tuple[float, float]] = {  # centre, width as parts of the range
    "lung": (0.30, 0.60),
    "soft-tissue": (0.55, 0.50),
    "bone": (0.80, 0.40),
}


class RenderError(XraygateError):
    """The object has no image the gateway can render."""


@dataclass(frozen=True)
class Window:
    """A linear VOI window in modality values."""

    center: float
    width: float


@dataclass(frozen=True)
class Rendered:
    png: bytes
    size: tuple[int, int]  # of the PNG
    source_size: tuple[int, int]  # of the stored image (columns, rows)
    window: Window | None  # the linear window applied (or its equivalent); None for colour
    value_range: tuple[float, float]  # 0.5th and 99.5th percentile of the modality values


def render_png(data: bytes, max_side: int = 1024) -> bytes:
    """A display PNG (8-bit grey or RGB) of the DICOM object in ``data``."""
    return render(data, max_side).png


def render(
    data: bytes, max_side: int, window: Window | None = None, preset: Preset = "default"
) -> Rendered:
    """The display PNG with ``window`` (else ``preset``; "default": the header's VOI)."""
    ds, pixels = _decode(data)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    applied: Window | None = None
    value_range = (0.0, 255.0)
    if samples == 3:
        image = Image.fromarray(_rgb(pixels), mode="RGB")
    else:
        values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
        value_range = _value_range(values)
        if window is None and preset != "default":
            window = preset_window(preset, ds, value_range, photometric)
        if window is None:
            grey, applied = _grey(values, ds, photometric)
        else:
            grey, applied = _windowed(values, window, photometric), window
        image = Image.fromarray(grey, mode="L")
    source = image.size
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return Rendered(out.getvalue(), image.size, source, applied, value_range)


def _decode(data: bytes) -> tuple[pydicom.Dataset, NDArray[Any]]:
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
    return ds, pixels[0] if frames > 1 else pixels


def preset_window(
    preset: Preset, ds: pydicom.Dataset, value_range: tuple[float, float], photometric: str
) -> Window | None:
    """The window of a named preset for this image (None for "default")."""
    if preset == "default":
        return None
    if str(ds.get("Modality", "")) == "CT" or str(ds.get("RescaleType", "")) == "HU":
        return Window(*CT_PRESETS[preset])
    low, high = value_range
    span = max(high - low, 1.0)
    part, width = RELATIVE_PRESETS[preset]
    center = high - part * span if photometric == "MONOCHROME1" else low + part * span
    return Window(center, width * span)


def _value_range(values: NDArray[np.float64]) -> tuple[float, float]:
    step = max(1, int(np.sqrt(values.size / 250_000)))  # about 250 000 samples are enough
    low, high = (float(v) for v in np.percentile(values[::step, ::step], [0.5, 99.5]))
    return low, high


def _grey(
    values: NDArray[np.float64], ds: pydicom.Dataset, photometric: str
) -> tuple[NDArray[np.uint8], Window]:
    """The header's VOI (or a percentile window); also the linear window it amounts to."""
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        # the header's window or LUT decides contrast; the output range maps to black..white
        integers = np.rint(values).astype(np.int64)  # a LUT is indexed by stored integers
        mapped = np.asarray(apply_voi_lut(integers, ds, index=0), dtype=np.float64)
        low, high = float(mapped.min(initial=0.0)), float(mapped.max(initial=1.0))
        window = _header_window(ds) or _span(*_value_range(values))
    else:  # no VOI in the header: a robust percentile window
        mapped = values
        low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
        window = _span(low, high)
    if high <= low:
        low, high = float(mapped.min(initial=0.0)), float(mapped.max(initial=1.0))
    return _scale(mapped, low, high, photometric), window


def _header_window(ds: pydicom.Dataset) -> Window | None:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if "VOILUTSequence" in ds or center is None or width is None:
        return None
    first = [v[0] if isinstance(v, pydicom.multival.MultiValue) else v for v in (center, width)]
    try:
        return Window(float(first[0]), float(first[1]))
    except (TypeError, ValueError):
        return None


def _span(low: float, high: float) -> Window:
    return Window((low + high) / 2.0, max(high - low, 1.0))


def _windowed(values: NDArray[np.float64], window: Window, photometric: str) -> NDArray[np.uint8]:
    half = max(window.width, 1.0) / 2.0
    return _scale(values, window.center - half, window.center + half, photometric)


def _scale(
    values: NDArray[np.float64], low: float, high: float, photometric: str
) -> NDArray[np.uint8]:
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
