"""A burned-in text corpus: real images from pydicom-data with names, IDs and dates drawn into
their pixels, and an OCR reader that says whether a planted string can still be read.

Shared by tests/anonymizer/test_pixel_phi*.py (a small corpus) and bench/pixel_phi.py (the full
evaluation). Each sample is one CR/MR image built from a real base image:

- bases: RG1 (chest CR, MONOCHROME1, 15 bit) also as MONOCHROME2 (values inverted), RG3
  (extremity CR, MONOCHROME1, 10 bit, a real lead "R" marker), MR2 (MONOCHROME2, 12 bit);
- variants: crops, flips, gamma and noise, so no two images share their pixels;
- text: 1-3 strings (a name, an ID, a date; several formats) in different corners, 24-96 px
  font size, DejaVu and Liberation fonts (regular, bold, serif, mono, condensed), drawn
  anti-aliased at a chosen contrast to the local background: ``extreme`` (the brightest or
  darkest displayable value), ``medium`` or ``low`` (a fraction of the display range), brighter
  or darker than the background;
- clean samples carry no text, or only allow-listed laterality / view markers (``L``, ``PA``...).

Everything is seeded: the same seed gives the same corpus.
"""

from __future__ import annotations

import io
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from xraygate.anonymizer.ocr import read_words

CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"

# Only fonts the Makefile installs (fonts-dejavu-core, fonts-dejavu-extra, fonts-liberation2).
_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/truetype/liberation2"),
)
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSansCondensed-Bold.ttf",
    "LiberationSans-Regular.ttf",
    "LiberationSans-Bold.ttf",
    "LiberationSerif-Regular.ttf",
    "LiberationMono-Regular.ttf",
    "LiberationMono-Bold.ttf",
)
SIZES = (24, 28, 32, 40, 48, 56, 64, 80, 96)
CONTRASTS = {"extreme": 1.0, "medium": 0.5, "low": 0.3}
CONTRAST_WEIGHTS = (0.5, 0.3, 0.2)
CORNERS = ("tl", "tr", "bl", "br")
MARKERS = ("L", "R", "PA", "AP", "ERECT", "SUPINE", "PORTABLE")

_GIVEN = ("ZEBEDEE", "HARRIET", "OSWALD", "MIRANDA", "THEODORE", "BEATRIX", "CORNELIUS", "ODETTE")
_FAMILY = ("QUIMBY", "FAIRWEATHER", "BRACKENBURY", "LINDQVIST", "OKONKWO", "VASQUEZ", "MURDOCH")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class Planted:
    """One drawn string: what it says, the parts that identify someone, where it is."""

    text: str
    secrets: tuple[str, ...]  # alphanumeric parts that must not be readable (upper case)
    box: tuple[int, int, int, int]  # x, y, width, height in pixels
    size: int
    font: str
    contrast: str
    corner: str


@dataclass
class Sample:
    name: str
    ds: Dataset
    planted: list[Planted] = field(default_factory=list)  # PHI strings
    markers: list[Planted] = field(default_factory=list)  # allow-listed tokens, real or drawn

    @property
    def clean(self) -> bool:
        return not self.planted


@dataclass(frozen=True)
class _Base:
    name: str
    pixels: np.ndarray  # uint16, stored values
    bits: int
    photometric: str
    window: tuple[float, float]  # center, width
    modality: str
    markers: tuple[tuple[int, int, int, int], ...] = ()  # real markers already in the image


def font_path(name: str) -> Path:
    for folder in _FONT_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"font {name} is not installed (make system-deps)")


@cache
def _base(name: str, max_side: int) -> _Base:
    spec = {
        "RG1": ("RG1_UNCR.dcm", False, ()),
        "RG1M2": ("RG1_UNCR.dcm", True, ()),
        "RG3": ("RG3_UNCR.dcm", False, ((1130, 1365, 100, 115),)),
        "MR2": ("MR2_UNCR.dcm", False, ()),
    }[name]
    path = get_testdata_file(spec[0])
    assert path is not None, f"{spec[0]} is missing from pydicom-data"
    src = dcmread(path)
    arr = src.pixel_array.astype(np.uint16)
    bits = int(src.BitsStored)
    center = float(src.get("WindowCenter", 0) or 0)
    width = float(src.get("WindowWidth", 0) or 0)
    if not width:
        lo, hi = np.percentile(arr, [0.5, 99.5])
        center, width = (lo + hi) / 2, max(hi - lo, 1)
    photometric = str(src.PhotometricInterpretation)
    if spec[1]:  # the same image as MONOCHROME2: stored values inverted
        top = (1 << bits) - 1
        arr = (top - arr).astype(np.uint16)
        photometric, center = "MONOCHROME2", top - center
    markers = spec[2]
    scale = min(1.0, max_side / max(arr.shape))
    if scale < 1.0:
        size = (round(arr.shape[1] * scale), round(arr.shape[0] * scale))
        arr = np.asarray(
            Image.fromarray(arr.astype(np.float32), "F").resize(size, Image.Resampling.BOX)
        ).astype(np.uint16)
        markers = tuple(tuple(round(v * scale) for v in box) for box in markers)  # type: ignore[misc]
    return _Base(name, arr, bits, photometric, (center, width), str(src.Modality), markers)


BASES = ("RG1", "RG1M2", "RG3", "MR2")
_BASE_WEIGHTS = (0.4, 0.3, 0.2, 0.1)


def _variant(base: _Base, rng: random.Random) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """A crop/flip/gamma/noise variant of the base pixels (and where its markers went)."""
    arr = base.pixels.astype(np.float64)
    h, w = arr.shape
    markers = [tuple(m) for m in base.markers]
    keep = rng.uniform(0.8, 1.0)
    ch, cw = int(h * keep), int(w * keep)
    y0, x0 = rng.randint(0, h - ch), rng.randint(0, w - cw)
    arr = arr[y0 : y0 + ch, x0 : x0 + cw]
    markers = [(x - x0, y - y0, mw, mh) for x, y, mw, mh in markers]
    markers = [
        m for m in markers if m[0] >= 0 and m[1] >= 0 and m[0] + m[2] <= cw and m[1] + m[3] <= ch
    ]
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
        markers = [(cw - x - mw, y, mw, mh) for x, y, mw, mh in markers]
    top = float((1 << base.bits) - 1)
    gamma = rng.uniform(0.8, 1.25)
    arr = top * (arr / top) ** gamma
    arr = arr + np.random.default_rng(rng.randrange(1 << 30)).normal(0, top * 0.002, arr.shape)
    return np.clip(arr, 0, top), markers


def _display(base: _Base) -> tuple[float, float]:
    center, width = base.window
    return center - width / 2, center + width / 2


def _to_stored(level: float, base: _Base) -> float:
    """Display level 0 (black) .. 1 (white) -> stored value."""
    lo, hi = _display(base)
    if base.photometric == "MONOCHROME1":
        level = 1.0 - level
    return lo + level * (hi - lo)


def _to_level(value: float, base: _Base) -> float:
    lo, hi = _display(base)
    level = min(1.0, max(0.0, (value - lo) / (hi - lo)))
    return 1.0 - level if base.photometric == "MONOCHROME1" else level


def _phi_strings(rng: random.Random) -> list[tuple[str, tuple[str, ...]]]:
    given, family = rng.choice(_GIVEN), rng.choice(_FAMILY)
    name = rng.choice(
        [
            f"{family}, {given}",
            f"{family}^{given}",
            f"{given} {family}",
            f"{family.title()} {given.title()}",
        ]
    )
    mrn = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 9)))
    ident = rng.choice([f"MRN {mrn}", f"ID: {mrn}", mrn, f"PID {mrn}"])
    year, month, day = rng.randint(1930, 2005), rng.randint(1, 12), rng.randint(10, 28)
    date = rng.choice(
        [
            f"{day:02d}.{month:02d}.{year}",
            f"{year}-{month:02d}-{day:02d}",
            f"{month:02d}/{day:02d}/{year}",
            f"{day:02d}-{_MONTHS[month - 1]}-{year}",
        ]
    )
    date_secret = "".join(c for c in date if c.isalnum()).upper()
    return [
        (name, (family, given)),
        (ident, (mrn,)),
        (rng.choice(["DOB ", "", "Born "]) + date, (date_secret,)),
    ]


def _draw(
    arr: np.ndarray,
    base: _Base,
    text: str,
    origin: tuple[int, int],
    font: ImageFont.FreeTypeFont,
    contrast: str,
    rng: random.Random,
) -> tuple[int, int, int, int]:
    h, w = arr.shape
    mask_img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask_img)
    draw.text(origin, text, font=font, fill=255)
    mask = np.asarray(mask_img).astype(np.float64) / 255.0
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    region = arr[box[1] : box[1] + box[3], box[0] : box[0] + box[2]]
    bg = _to_level(float(np.median(region)), base)
    c = CONTRASTS[contrast]
    if contrast == "extreme":  # the brightest or the darkest displayable value
        level = 1.0 if (bg < 0.5 or rng.random() < 0.25) and bg < 0.9 else 0.0
        top = float((1 << base.bits) - 1)
        value = top if (level == 1.0) == (base.photometric == "MONOCHROME2") else 0.0
    else:
        up, down = bg + c, bg - c
        level = up if (up <= 1.0 and (down < 0.0 or rng.random() < 0.6)) else down
        level = min(1.0, max(0.0, level))
        value = _to_stored(level, base)
    arr[:] = arr * (1.0 - mask) + value * mask
    return box


def text_sample(seed: int, *, max_side: int = 4096, base: str | None = None) -> Sample:
    """One image with 1-3 PHI strings burned in (and sometimes a laterality marker)."""
    rng = random.Random(seed)
    b = _base(base or rng.choices(BASES, _BASE_WEIGHTS)[0], max_side)
    arr, markers = _variant(b, rng)
    h, w = arr.shape
    strings = _phi_strings(rng)
    rng.shuffle(strings)
    count = rng.choice((1, 2, 2, 3))
    corners = rng.sample(CORNERS, 2)
    planted: list[Planted] = []
    stacks = {c: 0 for c in CORNERS}
    for i, (text, secrets) in enumerate(strings[:count]):
        corner = corners[0] if i == 0 or rng.random() < 0.5 else corners[1]
        size = rng.choice(SIZES)
        fname = rng.choice(FONT_FILES)
        font = ImageFont.truetype(str(font_path(fname)), size)
        while font.getlength(text) > 0.55 * w and size > SIZES[0]:
            size = max(SIZES[0], int(size * 0.8))
            font = ImageFont.truetype(str(font_path(fname)), size)
        tw = int(font.getlength(text))
        margin = rng.randint(max(4, w // 100), max(8, w // 25))
        x = margin if corner[1] == "l" else w - tw - margin
        line = int(size * 1.3)
        top = corner[0] == "t"
        y = margin + stacks[corner] if top else h - margin - line - stacks[corner]
        stacks[corner] += line
        contrast = rng.choices(list(CONTRASTS), CONTRAST_WEIGHTS)[0]
        box = _draw(arr, b, text, (x, y), font, contrast, rng)
        planted.append(Planted(text, secrets, box, size, fname, contrast, corner))
    drawn = _markers(arr, b, rng, [c for c in CORNERS if c not in corners], chance=0.3)
    sample = Sample(f"text-{seed}-{b.name}", _dataset(arr, b, seed), planted)
    sample.markers = [*_real_markers(markers), *drawn]
    return sample


def clean_sample(seed: int, *, max_side: int = 4096, base: str | None = None) -> Sample:
    """One image without PHI: a variant of a base, sometimes with view/laterality markers."""
    rng = random.Random(seed)
    b = _base(base or rng.choices(BASES, _BASE_WEIGHTS)[0], max_side)
    arr, markers = _variant(b, rng)
    drawn = _markers(arr, b, rng, list(CORNERS), chance=0.5)
    sample = Sample(f"clean-{seed}-{b.name}", _dataset(arr, b, seed))
    sample.markers = [*_real_markers(markers), *drawn]
    return sample


def _real_markers(boxes: list[tuple[int, ...]]) -> list[Planted]:
    return [Planted("R", (), (b[0], b[1], b[2], b[3]), 0, "lead", "real", "") for b in boxes]


def _markers(
    arr: np.ndarray, base: _Base, rng: random.Random, corners: list[str], *, chance: float
) -> list[Planted]:
    out: list[Planted] = []
    if not corners or rng.random() >= chance:
        return out
    h, w = arr.shape
    corner = rng.choice(corners)
    text = rng.choice(MARKERS)
    size = rng.choice((32, 48, 64, 96))
    fname = rng.choice(FONT_FILES)
    font = ImageFont.truetype(str(font_path(fname)), size)
    tw = int(font.getlength(text))
    margin = rng.randint(max(4, w // 50), max(8, w // 12))
    x = margin if corner[1] == "l" else w - tw - margin
    y = margin if corner[0] == "t" else h - margin - int(size * 1.3)
    box = _draw(arr, base, text, (x, y), font, "extreme", rng)
    out.append(Planted(text, (), box, size, fname, "extreme", corner))
    return out


def _dataset(arr: np.ndarray, base: _Base, seed: int) -> Dataset:
    """A minimal, valid image object around the pixels (BurnedInAnnotation absent)."""
    sop_class = MR_IMAGE if base.modality == "MR" else CR_IMAGE
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[f"pixel-corpus-{base.name}-{seed}"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"pixel-corpus-study-{seed}"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"pixel-corpus-series-{seed}"])
    ds.Modality = base.modality
    ds.PatientName = "CORPUS^PATIENT"
    ds.PatientID = f"CORPUS{seed}"
    ds.StudyDate = "20240102"
    ds.Manufacturer = "CORPUS"
    ds.WindowCenter = f"{base.window[0]:.0f}"
    ds.WindowWidth = f"{base.window[1]:.0f}"
    ds.set_pixel_data(
        np.clip(np.rint(arr), 0, (1 << base.bits) - 1).astype(np.uint16),
        base.photometric,
        base.bits,
        generate_instance_uid=False,
    )
    return ds


def corpus(
    text: int, clean: int, *, seed: int = 0, max_side: int = 4096
) -> tuple[list[Sample], list[Sample]]:
    return (
        [text_sample(seed + i, max_side=max_side) for i in range(text)],
        [clean_sample(seed + 100_000 + i, max_side=max_side) for i in range(clean)],
    )


# -- reading it back ------------------------------------------------------------------------


def display(ds: Dataset) -> np.ndarray:
    """The image as a radiologist's viewer shows it: window applied, 8 bit, white = bright."""
    arr = ds.pixel_array.astype(np.float64)
    if arr.ndim == 3:
        arr = arr.mean(axis=2)
    center = float(ds.get("WindowCenter", 0) or 0)
    width = float(ds.get("WindowWidth", 0) or 0)
    if not width:
        lo, hi = np.percentile(arr, [0.5, 99.5])
    else:
        lo, hi = center - width / 2, center + width / 2
    level = np.clip((arr - lo) / max(hi - lo, 1.0), 0, 1)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        level = 1.0 - level
    return (level * 255).astype(np.uint8)


def _normal(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())


def fuzzy_in(needle: str, haystack: str, max_edits: int) -> bool:
    """Whether ``needle`` occurs in ``haystack`` with at most ``max_edits`` edits (Sellers)."""
    if not needle:
        return False
    prev = [0] * (len(haystack) + 1)
    for i, ch in enumerate(needle, 1):
        cur = [i] + [0] * len(haystack)
        for j, hc in enumerate(haystack, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ch != hc))
        prev = cur
    return min(prev) <= max_edits


def _reads(text: str, secret: str) -> bool:
    edits = 1 if len(secret) >= 6 else 0
    return fuzzy_in(secret, _normal(text), edits)


def crop_views(view: np.ndarray, box: tuple[int, int, int, int]) -> Iterator[Image.Image]:
    """The padded box as Tesseract reads best: a border of background around it, letters
    upscaled to ~40 px; grey, inverted, and thresholded half-way to the brightest and to the
    darkest value (burned-in text is usually one of those)."""
    x, y, w, h = box
    pad = max(16, h)
    crop = view[max(0, y - pad) : y + h + pad, max(0, x - pad) : x + w + pad].astype(np.float64)
    factor = max(1.0, 40 / max(h, 1))
    med = float(np.median(crop))
    bright = crop > (med + crop.max()) / 2
    dark = crop < (med + crop.min()) / 2
    for arr in (crop, 255 - crop, np.where(bright, 0, 255), np.where(dark, 0, 255)):
        img = Image.fromarray(arr.astype(np.uint8))
        if factor > 1.0:
            size = (int(img.width * factor), int(img.height * factor))
            img = img.resize(size, Image.Resampling.BICUBIC)
        border = int(np.median(np.asarray(img)))
        yield ImageOps.expand(img, border=24, fill=border)


def readable_secrets(view: np.ndarray, item: Planted) -> list[str]:
    """The secrets of one planted string that OCR reads in its box (stops once all are read)."""
    left = list(item.secrets)
    for img in crop_views(view, item.box):
        for psm in (6, 11):
            text = " ".join(w.text for w in read_words(img, psm=psm))
            left = [s for s in left if not _reads(text, s)]
            if not left:
                return list(item.secrets)
    return [s for s in item.secrets if s not in left]


def readable(ds: Dataset, planted: list[Planted]) -> list[str]:
    """The secrets of ``planted`` that OCR still reads where they were drawn."""
    view = display(ds)
    return [s for item in planted for s in readable_secrets(view, item)]


# -- the evaluation the tests and the bench share -------------------------------------------


@dataclass
class Outcome:
    name: str
    clean: bool  # the sample had no PHI text
    action: str  # none | blanked | held | skipped
    before: list[str]  # planted secrets OCR reads in the input
    after: list[str]  # planted secrets OCR reads in the exported output ([] when not exported)
    covered: int  # planted strings whose box is mostly (>= 90 %) inside blanked regions
    beyond_markers: bool  # something blanked/held that is not an allow-listed marker
    seconds: float  # de-identification wall time (header + pixels)
    cpu: float = 0.0  # de-identification CPU time, Tesseract subprocesses included


def covered(box: tuple[int, int, int, int], regions: list[tuple[int, ...]]) -> float:
    x, y, w, h = box
    mask = np.zeros((h, w), dtype=bool)
    for _, rx, ry, rw, rh in regions:
        x0, y0 = max(rx, x) - x, max(ry, y) - y
        x1, y1 = min(rx + rw, x + w) - x, min(ry + rh, y + h) - y
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = True
    return float(mask.mean())


def _overlaps(region: tuple[int, ...], box: tuple[int, int, int, int]) -> bool:
    _, rx, ry, rw, rh = region
    x, y, w, h = box
    return rx < x + w and x < rx + rw and ry < y + h and y < ry + rh


def run_sample(
    sample: Sample, deidentify: Callable[[bytes], object], *, read_before: bool = True
) -> Outcome:
    """De-identify one sample with ``deidentify`` (bytes -> CheckedResult, may raise) and
    read its planted strings back with OCR before and after."""
    from xraygate.anonymizer.pixel_phi import CheckedResult, TextHeld
    from xraygate.core.errors import BurnedInText

    data = _to_bytes(sample.ds)
    before = readable(sample.ds, sample.planted) if read_before and sample.planted else []
    start, cpu0 = time.perf_counter(), _cpu()
    try:
        res = deidentify(data)
    except TextHeld as exc:
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu0
        regions = [tuple(r) for r in exc.report.regions]
        return Outcome(
            sample.name,
            sample.clean,
            "held",
            before,
            [],
            0,
            _beyond(regions, sample.markers),
            seconds,
            cpu,
        )
    except BurnedInText:
        return Outcome(
            sample.name, sample.clean, "skipped", before, [], 0, True, time.perf_counter() - start
        )
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu0
    assert isinstance(res, CheckedResult)
    out = dcmread(io.BytesIO(res.data))
    regions = [tuple(r) for r in res.pixel.regions]
    after = readable(out, sample.planted) if sample.planted else []
    inside = sum(1 for p in sample.planted if covered(p.box, regions) >= 0.9)
    return Outcome(
        sample.name,
        sample.clean,
        res.pixel.action,
        before,
        after,
        inside,
        _beyond(regions, sample.markers),
        seconds,
        cpu,
    )


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _beyond(regions: list[tuple[int, ...]], markers: list[Planted]) -> bool:
    return any(not any(_overlaps(r, m.box) for m in markers) for r in regions)


def _to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@dataclass
class Figures:
    text_images: int
    readable_before: int  # text images with at least one secret OCR reads before
    leaked: int  # of those: exported with a secret still readable
    held: int  # of those: held (or skipped), not exported
    clean_after: int  # of those: exported with no secret readable
    covered: int  # planted strings (>= 90 % of their box) inside blanked regions
    planted: int
    clean_images: int
    false_positives: int  # clean images blanked/held beyond markers
    seconds: float
    cpu: float

    @property
    def clean_rate(self) -> float:
        return self.clean_after / max(self.readable_before, 1)

    @property
    def safe_rate(self) -> float:  # not readable after: exported clean or held
        return (self.readable_before - self.leaked) / max(self.readable_before, 1)

    @property
    def held_rate(self) -> float:
        return self.held / max(self.readable_before, 1)

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / max(self.clean_images, 1)

    def lines(self) -> list[str]:
        return [
            f"text images: {self.text_images} ({self.readable_before} with planted text OCR reads "
            f"before de-identification; {self.planted} strings)",
            f"  no planted string readable after: {self.clean_after} exported clean "
            f"({100 * self.clean_rate:.1f} %), {self.held} held ({100 * self.held_rate:.1f} %), "
            f"{self.leaked} exported with a readable string",
            f"  planted strings (>= 90 % of their box) inside blanked regions: "
            f"{self.covered}/{self.planted}",
            f"clean images: {self.clean_images}, blanked or held beyond markers: "
            f"{self.false_positives} ({100 * self.false_positive_rate:.1f} %)",
        ]


def figures(outcomes: list[Outcome], samples: list[Sample]) -> Figures:
    text = [o for o in outcomes if not o.clean]
    readable_text = [o for o in text if o.before]
    clean = [o for o in outcomes if o.clean]
    return Figures(
        text_images=len(text),
        readable_before=len(readable_text),
        leaked=sum(1 for o in readable_text if o.after),
        held=sum(1 for o in readable_text if o.action in ("held", "skipped")),
        clean_after=sum(
            1 for o in readable_text if o.action not in ("held", "skipped") and not o.after
        ),
        covered=sum(o.covered for o in text),
        planted=sum(len(s.planted) for s in samples),
        clean_images=len(clean),
        false_positives=sum(1 for o in clean if o.beyond_markers),
        seconds=sum(o.seconds for o in outcomes),
        cpu=sum(o.cpu for o in outcomes),
    )


def burn_in(
    ds: Dataset,
    text: str,
    secrets: tuple[str, ...],
    *,
    corner: str = "tl",
    size: int = 48,
    font: str = "DejaVuSans.ttf",
    contrast: str = "extreme",
    seed: int = 0,
) -> Planted:
    """Draw ``text`` into a real image's pixels (in place; the pixel data become uncompressed
    Explicit VR Little Endian), as a device that burns in annotations would."""
    arr = ds.pixel_array.astype(np.float64)
    bits = int(ds.BitsStored)
    center = float(ds.get("WindowCenter", 0) or 0)
    width = float(ds.get("WindowWidth", 0) or 0)
    if not width:
        lo, hi = np.percentile(arr, [0.5, 99.5])
        center, width = (lo + hi) / 2, max(hi - lo, 1)
    base = _Base("real", arr, bits, str(ds.PhotometricInterpretation), (center, width), "CR")
    face = ImageFont.truetype(str(font_path(font)), size)
    h, w = arr.shape
    tw, margin = int(face.getlength(text)), max(8, w // 40)
    x = margin if corner[1] == "l" else w - tw - margin
    y = margin if corner[0] == "t" else h - margin - int(size * 1.3)
    box = _draw(arr, base, text, (x, y), face, contrast, random.Random(seed))
    ds.set_pixel_data(
        np.clip(np.rint(arr), 0, (1 << bits) - 1).astype(np.uint16),
        str(ds.PhotometricInterpretation),
        bits,
        generate_instance_uid=False,
    )
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return Planted(text, secrets, box, size, font, contrast, corner)


def chest_cr(max_side: int = 1024) -> Dataset:
    """The real chest CR (RG1, its real header), downscaled so tests OCR it quickly."""
    path = get_testdata_file("RG1_UNCR.dcm")
    assert path is not None
    ds = dcmread(path)
    b = _base("RG1", max_side)
    ds.set_pixel_data(b.pixels, "MONOCHROME1", b.bits, generate_instance_uid=False)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds
