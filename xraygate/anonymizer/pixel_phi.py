"""Pixel PHI: burned-in text is found and removed from every image before it leaves the site.

The step runs on the de-identified object (after the header profile, the ``BurnedInAnnotation``
check and any site cleaning rule, whose rectangles are already blank), in the ``deidentify``
worker and in ``xraygate deid``; never on the ingest path. For each frame:

1. the image is shown as a viewer would (modality and VOI LUT or window of the header, else the
   0.5-99.5 percentile range; MONOCHROME1 inverted; colour as luminance);
2. :class:`~.text_finder.TextFinder` reads it with Tesseract and keeps what is text and not an
   allow-listed marker (``L``, ``R``, ``PA``, ``AP``, ``ERECT``, ``SUPINE``, ``PORTABLE``...);
   when that read finds nothing (at first, or after blanking) a second, stricter read with a
   different page segmentation (sparse text) must find nothing either;
3. ``blank`` mode (default): every text box, padded, is set to its surroundings' median value,
   and the image is read again; text still found after two rounds holds the image. ``hold`` mode:
   any text holds the image.

A blanked image is re-encoded uncompressed with ``BurnedInAnnotation`` NO, Clean Pixel Data
(113101) in its de-identification method, ``ImageType`` DERIVED and a derivation (113047 Pixel by
pixel mask) naming the blanked regions. An image without text leaves byte for byte as the header
step wrote it (its ``BurnedInAnnotation`` untouched: not finding text proves nothing). A held image
raises :class:`TextHeld` with a review thumbnail that shows no readable text.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pydicom import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence

from xraygate.anonymizer import pixels
from xraygate.anonymizer.engine import Deidentifier, DeidResult
from xraygate.anonymizer.ocr import Box, Display
from xraygate.anonymizer.profile import CLEAN_PIXEL_CODE
from xraygate.anonymizer.reading import read
from xraygate.anonymizer.text_finder import Found, TextFinder
from xraygate.core.errors import BurnedInText

MASK_CODE = ("113047", "Pixel by pixel mask")  # CID 7203 Image Derivation
THUMBNAIL_PX = 160
_TABLE_MAX = 1 << 20  # integer frames spanning up to this many values are shown through a table
Pct = tuple[float, float]


class PixelMode(StrEnum):
    BLANK = "blank"
    HOLD = "hold"


@dataclass(frozen=True)
class PixelReport:
    """What the pixel step did to one image (the manifest line carries it)."""

    action: str  # none | blanked | held | no-pixels
    regions: tuple[tuple[int, int, int, int, int], ...] = ()  # frame, x, y, width, height
    kept: tuple[str, ...] = ()  # allow-listed tokens left in the image
    rounds: int = 0

    def manifest(self) -> dict[str, object]:
        return {
            "action": self.action,
            "regions": [list(r) for r in self.regions],
            "kept_tokens": list(self.kept),
        }


class TextHeld(BurnedInText):
    """Burned-in text was found and the image is held for review, not exported."""

    def __init__(self, message: str, report: PixelReport, thumbnail: bytes) -> None:
        super().__init__(message)
        self.report = report
        self.thumbnail = thumbnail


@dataclass(frozen=True)
class CheckedResult(DeidResult):
    """A de-identified object whose pixels were checked for burned-in text."""

    pixel: PixelReport = field(default_factory=lambda: PixelReport("none"))


class PixelPhi:
    """Thread-safe; one per configuration."""

    def __init__(self, finder: TextFinder, mode: PixelMode = PixelMode.BLANK, rounds: int = 2):
        self.finder = finder
        self.mode = mode
        self.rounds = rounds

    def check(self, res: DeidResult) -> CheckedResult:
        """Check a de-identified object; raises :class:`TextHeld` or ``BurnedInText``."""
        ds = read(res.data)
        if "PixelData" not in ds:
            if "PixelDataProviderURL" in ds:
                raise BurnedInText("pixel data are elsewhere (provider URL): cannot be checked")
            return _checked(res, PixelReport("no-pixels"))
        arr = pixels.decoded_pixels(ds)
        frames = pixels.frames_of(ds, arr)
        views = [display(ds, frame) for frame in frames]
        found = [self._look(view) for view in views]
        kept = tuple(sorted({t for f in found for t in f.kept}))
        if not any(found):
            return _checked(res, PixelReport("none", kept=kept, rounds=1))
        if self.mode == PixelMode.HOLD:
            raise self._held("burned-in text found", ds, views, found, kept, 1)
        blanked: list[tuple[int, int, int, int, int]] = []
        for rnd in range(1, self.rounds + 1):
            for index, (frame, hit) in enumerate(zip(frames, found, strict=True)):
                for box in hit.boxes:
                    blank_box(frame, box)
                    blanked.append((index, *box))
            views = [display(ds, frame) for frame in frames]
            found = [
                self._look(view) if hit else Found((), ())
                for view, hit in zip(views, found, strict=True)
            ]
            if not any(found):
                report = PixelReport("blanked", tuple(blanked), kept, rnd + 1)
                return self._blanked(res, ds, arr, report)
        raise self._held(
            "burned-in text still found after blanking", ds, views, found, kept, self.rounds + 1
        )

    def _look(self, view: Display) -> Found:
        """Text in one displayed frame (:meth:`TextFinder.look`: both reads)."""
        return self.finder.look(view)

    def _held(
        self,
        reason: str,
        ds: Dataset,
        views: list[Display],
        found: list[Found],
        kept: tuple[str, ...],
        rounds: int,
    ) -> TextHeld:
        regions = tuple((i, *b) for i, f in enumerate(found) for b in f.boxes)
        report = PixelReport("held", regions, kept, rounds)
        first = next(i for i, f in enumerate(found) if f)
        return TextHeld(
            f"{reason} ({len(regions)} region{'s' if len(regions) != 1 else ''}): held for review",
            report,
            review_thumbnail(views[first], found[first].boxes),
        )

    def _blanked(
        self, res: DeidResult, ds: Dataset, arr: np.ndarray[Any, Any], report: PixelReport
    ) -> CheckedResult:
        pixels.store_pixels(ds, arr)
        mark_blanked(ds, len(report.regions))
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        codes = res.codes
        if CLEAN_PIXEL_CODE.value not in codes:
            codes = (*codes, CLEAN_PIXEL_CODE.value)
        return CheckedResult(
            buf.getvalue(),
            b"",
            res.patient_id,
            res.study_uid,
            res.series_uid,
            res.sop_uid,
            True,
            codes,
            b"",
            report,
        )


def _checked(res: DeidResult, report: PixelReport) -> CheckedResult:
    fields = {name: getattr(res, name) for name in DeidResult.__dataclass_fields__}
    return CheckedResult(**fields, pixel=report)


def display(ds: Dataset, frame: np.ndarray[Any, Any]) -> Display:
    """One frame as a viewer shows it: 8 bit, 0 black, 255 white."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    data: np.ndarray[Any, Any]
    if photometric == "PALETTE COLOR":
        data = apply_color_lut(frame, ds).astype(np.float64).mean(axis=-1)
    elif frame.ndim == 3:  # RGB (pydicom decodes YBR to RGB)
        data = frame.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    elif frame.dtype.kind in "iu" and frame.size and _span(frame) <= _TABLE_MAX:
        return _display_by_table(ds, frame, photometric)
    else:
        data, pct = _levels(ds, frame)
        return _to_display(data, pct, photometric)
    return _to_display(data, (0.5, 99.5), photometric)


def _levels(ds: Dataset, values: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], Pct]:
    """Stored values through the modality and VOI LUT (or window) of the header, and the
    percentile range of the result that is shown: all of it when the header windows it, else
    0.5-99.5 %."""
    data = np.asarray(apply_modality_lut(values, ds), dtype=np.float64)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        try:
            return np.asarray(apply_voi_lut(data, ds), dtype=np.float64), (0.0, 100.0)
        except (ValueError, TypeError, IndexError, KeyError):
            pass  # a broken VOI: the percentile range below
    return data, (0.5, 99.5)


def _span(frame: np.ndarray[Any, Any]) -> int:
    return int(frame.max()) - int(frame.min()) + 1


def _display_by_table(ds: Dataset, frame: np.ndarray[Any, Any], photometric: str) -> Display:
    """:func:`display` for an integer frame, through a table of its value range: the LUTs run
    on each stored value once, not on each pixel (a 2k x 2k CR: 5x faster), with the same
    result."""
    low = int(frame.min())
    index = (frame.astype(np.int64) - low) if frame.dtype.kind == "i" else frame - low
    counts = np.bincount(index.ravel(), minlength=_span(frame))
    values = np.arange(low, low + len(counts), dtype=np.int64).astype(frame.dtype)
    mapped, pct = _levels(ds, values)
    present = counts > 0
    lo, hi = _weighted_percentiles(mapped[present], counts[present], pct)
    level = np.clip((mapped - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        level = 1.0 - level
    table = (level * 255.0 + 0.5).astype(np.uint8)
    return np.asarray(table[index])


def _weighted_percentiles(
    values: np.ndarray[Any, Any], counts: np.ndarray[Any, Any], pct: Pct
) -> tuple[float, float]:
    """``np.percentile`` (linear) of the data holding each value ``counts`` times."""
    order = np.argsort(values, kind="stable")
    ordered, cumulative = values[order], np.cumsum(counts[order])
    n = int(cumulative[-1])
    out = []
    for q in pct:
        position = q / 100.0 * (n - 1)
        below = int(np.floor(position))
        t = position - below
        a = float(ordered[np.searchsorted(cumulative, below, side="right")])
        b = float(ordered[np.searchsorted(cumulative, min(below + 1, n - 1), side="right")])
        out.append(b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t)
    return out[0], out[1]


def _to_display(data: np.ndarray[Any, Any], pct: Pct, photometric: str) -> Display:
    lo, hi = (float(v) for v in np.percentile(data, pct))
    level = np.clip((data - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        level = 1.0 - level
    return (level * 255.0 + 0.5).astype(np.uint8)


def blank_box(frame: np.ndarray[Any, Any], box: Box) -> None:
    """Set a box to the median of the band of pixels around it (per colour sample)."""
    x, y, w, h = box
    band = max(4, h // 2)
    rows, cols = frame.shape[:2]
    y0, y1 = max(0, y - band), min(rows, y + h + band)
    x0, x1 = max(0, x - band), min(cols, x + w + band)
    ring = np.ones((y1 - y0, x1 - x0), dtype=bool)
    ring[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = False
    around = frame[y0:y1, x0:x1][ring]
    if around.size == 0:  # the box is the whole frame
        around = frame[y0:y1, x0:x1].reshape(-1, *frame.shape[2:])
    value = np.median(around, axis=0)
    frame[y : y + h, x : x + w, ...] = np.rint(value).astype(frame.dtype)


def mark_blanked(ds: Dataset, regions: int) -> None:
    """Record the blanking: BurnedInAnnotation NO, Clean Pixel Data, derived image."""
    ds.BurnedInAnnotation = "NO"
    if "PixelDataProviderURL" in ds:
        del ds.PixelDataProviderURL
    image_type = list(ds.get("ImageType", []) or [])
    if image_type:
        ds.ImageType = ["DERIVED", *image_type[1:]]
    note = f"burned-in text blanked in {regions} region{'s' if regions != 1 else ''} (OCR)"
    previous = str(ds.get("DerivationDescription", "") or "")
    ds.DerivationDescription = f"{previous}; {note}"[:1024] if previous else note
    ds.DerivationCodeSequence = Sequence([*ds.get("DerivationCodeSequence", []), _code(*MASK_CODE)])
    codes = ds.get("DeidentificationMethodCodeSequence", [])
    if not any(item.get("CodeValue") == CLEAN_PIXEL_CODE.value for item in codes):
        ds.DeidentificationMethodCodeSequence = Sequence(
            [*codes, _code(CLEAN_PIXEL_CODE.value, CLEAN_PIXEL_CODE.meaning)]
        )
        methods = list(ds.get("DeidentificationMethod", []) or [])
        if isinstance(ds.get("DeidentificationMethod"), str):
            methods = [str(ds.DeidentificationMethod)]
        ds.DeidentificationMethod = [*methods, CLEAN_PIXEL_CODE.meaning[:64]]


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def review_thumbnail(view: Display, boxes: tuple[Box, ...]) -> bytes:
    """A small PNG for the reviewer: the found text boxes filled and outlined, everything
    downscaled to 160 px and blurred, so that no text in it can be read."""
    img = Image.fromarray(view).convert("RGB")
    draw = ImageDraw.Draw(img)
    for x, y, w, h in boxes:
        draw.rectangle((x, y, x + w, y + h), fill=(128, 128, 128))
    scale = THUMBNAIL_PX / max(img.width, img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    small = img.resize(size, Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(1.5))
    outline = ImageDraw.Draw(small)
    for x, y, w, h in boxes:
        box = (x * scale, y * scale, (x + w) * scale, (y + h) * scale)
        outline.rectangle(box, outline=(220, 40, 40), width=1)
    out = io.BytesIO()
    small.save(out, "PNG")
    return out.getvalue()


class CheckedDeidentifier:
    """What every image leaving the site goes through: the header profile (with the
    BurnedInAnnotation check and site rules), then the pixel step. Thread-safe."""

    def __init__(self, engine: Deidentifier, step: PixelPhi) -> None:
        self.engine = engine
        self.step = step

    def deidentify_bytes(self, data: bytes) -> CheckedResult:
        return self.step.check(self.engine.deidentify_bytes(data))

    def deidentify_file(self, path: Path) -> CheckedResult:
        return self.step.check(self.engine.deidentify_file(path))
