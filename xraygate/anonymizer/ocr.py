"""Find text in an image with Tesseract (Debian ``tesseract-ocr``, English data).

Tesseract reads clean black text on white; an X-ray is neither. So the image is first turned into
*text views*: the displayed image (8 bit, window applied, white = bright) minus a blurred copy of
itself keeps only sharp, small, high-contrast structure; thresholding that difference once for
structure brighter than its surroundings and once for darker gives two black-on-white views where
burned-in text (drawn sharp, usually in the brightest or darkest value) stands out and the smooth
anatomy drops away. The views are made at full resolution when the image is small (no side over
1000 px), otherwise downscaled so the smallest text size looked for still has ~17 px letters.
Tesseract does not read them whole (two megapixels of anatomy cost it ~0.2 s a view): the
candidate text lines of each view (:mod:`.candidates`) are cropped, one page each of a TIFF
(:func:`prepare`), which one Tesseract process reads (:func:`read_prepared`); word boxes come
back in image pixels. ``tessedit_do_invert=0``: the views are black on white already, Tesseract
need not re-read every doubtful line inverted.

Tesseract runs as a subprocess fed on stdin (an uncompressed PGM) and answering TSV on stdout:
no image of a patient is ever written to a temporary file. ``OMP_THREAD_LIMIT=1``: its OpenMP
threads only spin on a small shared machine (measured: 3x slower with them).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageFilter, ImageOps
from scipy import ndimage

from xraygate.anonymizer import tesseract_lib
from xraygate.anonymizer.candidates import grow_span, text_lines
from xraygate.core.errors import ConfigurationError, DeidentificationError

Box = tuple[int, int, int, int]  # x, y, width, height
Display = np.ndarray  # 2-D uint8, 0 black .. 255 white, as a viewer shows the image

TESSERACT = "tesseract"
_BORDER = 24  # white margin: Tesseract misses text that touches the image edge
_TARGET_LETTER_PX = 17.0  # font size Tesseract still reads reliably after downscaling
_MAX_EXTEND = 8  # a text line grows sideways by at most this many line heights
_CROP_VIEWS = 4  # pages per box in a closer look (crop_views)
_BLOCK_PSM = 6  # Tesseract page segmentation: one uniform block of text
SPARSE_PSM = 11  # Tesseract page segmentation: as much text as possible, in no order
_FULL_SIZE_PX = 1000  # images no larger than this (each side) are read at full resolution
_LOWER_CASE = 0.7  # the smallest letters (lower case, digits) of the smallest text size looked for
_LARGEST_TEXT_PX = 128  # largest font size looked for (pixels)
_STROKE_ROOM = 0.8  # the edge test's square, as a share of the smallest font size
# our views are black on white already: Tesseract need not re-read each line inverted
_NO_INVERT = ("-c", "tessedit_do_invert=0")


class OcrFailed(DeidentificationError):
    """Tesseract could not read an image (crash, timeout): nothing can be said about it."""


@dataclass(frozen=True)
class Word:
    text: str
    conf: float  # 0..100 (Tesseract's word confidence)
    box: Box  # in image pixels
    view: str  # which text view it was read in
    page: int = 1  # which page of a multi-page TIFF it was read on


@dataclass(frozen=True)
class OcrConfig:
    min_text_px: int = 24  # smallest font size (pixels) that must be found
    contrast: int = 24  # display levels (of 255) a stroke must stand out from its surroundings
    timeout_s: float = 60.0
    psm: int = 3  # page segmentation: 3 = automatic layout
    command: str = TESSERACT


@cache
def tesseract_version(command: str = TESSERACT) -> str:
    """The installed Tesseract's version; ConfigurationError when it (or, for the default
    command, its library) is missing."""
    path = shutil.which(command)
    if path is None:
        raise ConfigurationError(
            f"{command!r} not found: install Debian's tesseract-ocr (make system-deps)"
        )
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, timeout=30, check=True, env=_env()
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigurationError(f"{command} --version failed: {type(exc).__name__}") from exc
    if command == TESSERACT:  # the pixel step reads in-process: its library must load too
        try:
            tesseract_lib.load()
        except DeidentificationError as exc:
            raise ConfigurationError(str(exc)) from exc
    first = (out.stdout or out.stderr).decode(errors="replace").splitlines()
    return first[0] if first else "tesseract"


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_THREAD_LIMIT": "1"}


def read_words(
    image: Image.Image,
    *,
    psm: int | None = None,
    config: OcrConfig | None = None,
    extra: tuple[str, ...] = (),
) -> list[Word]:
    """Every word Tesseract reads in a greyscale image."""
    config = config or OcrConfig()
    buf = io.BytesIO()
    image.convert("L").save(buf, "PPM")  # PGM: no compression work
    return _read_bytes(buf.getvalue(), config.psm if psm is None else psm, config, extra)


def _read_bytes(
    data: bytes, psm: int, config: OcrConfig | None = None, extra: tuple[str, ...] = ()
) -> list[Word]:
    """Every word Tesseract reads in an encoded image (PGM, or a TIFF of several pages)."""
    config = config or OcrConfig()
    cmd = [config.command, "stdin", "stdout", "--psm", str(psm), "--dpi", "300", *extra, "tsv"]
    try:
        proc = subprocess.run(
            cmd, input=data, capture_output=True, timeout=config.timeout_s, env=_env()
        )
    except subprocess.TimeoutExpired as exc:
        raise OcrFailed(f"tesseract timed out after {config.timeout_s:.0f} s") from exc
    except OSError as exc:
        raise OcrFailed(f"tesseract could not run: {exc.strerror}") from exc
    if proc.returncode != 0:
        raise OcrFailed(f"tesseract failed with exit code {proc.returncode}")
    return list(_parse_tsv(proc.stdout.decode("utf-8", errors="replace")))


def read_pages(
    pages: list[Image.Image], psm: int, config: OcrConfig | None = None, *, invert: bool = True
) -> list[Word]:
    """Every word Tesseract reads on greyscale pages, each word with its page (from 1): in this
    process (:mod:`.tesseract_lib`) for the installed ``tesseract``, else (another command)
    through that command, the pages as one TIFF. ``invert=False``: no inverted re-reading of
    doubtful lines (the pages hold both polarities already)."""
    config = config or OcrConfig()
    if config.command == TESSERACT:
        arrays = [np.asarray(page.convert("L")) for page in pages]
        variables = {"tessedit_do_invert": "1" if invert else "0"}
        try:
            return _parse_tsv(tesseract_lib.read_tsv(arrays, psm, variables))
        except DeidentificationError as exc:
            raise OcrFailed(str(exc)) from exc
    buf = io.BytesIO()
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:])
    return _read_bytes(buf.getvalue(), psm, config, () if invert else _NO_INVERT)


def _parse_tsv(text: str) -> list[Word]:
    words = []
    for line in text.splitlines():  # the header row is no word row
        cols = line.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        left, top, width, height = (int(c) for c in cols[6:10])
        box = (left, top, width, height)
        words.append(Word(cols[11].strip(), float(cols[10]), box, "", int(cols[1])))
    return words


def working_scale(shape: tuple[int, ...], config: OcrConfig) -> float:
    """Downscale factor for reading: 1 (full resolution) for a small image (neither side over
    1000 px: downscaling a 1 MP MR lost its 24 px text), else the factor that leaves the smallest
    font looked for ~17 px. (Reading 1.5 MP chest CRs at full resolution found "text" lines in
    anatomy and collimator edges: they keep the downscaled read.)"""
    if max(shape[:2]) <= _FULL_SIZE_PX:
        return 1.0
    return min(1.0, _TARGET_LETTER_PX / max(config.min_text_px, 1))


def text_views(display: Display, scale: float, config: OcrConfig) -> list[tuple[str, Image.Image]]:
    """The black-on-white views Tesseract reads: strokes brighter (``bright``) and darker
    (``dark``) than their surroundings by at least ``config.contrast`` levels.

    "Surroundings" twice over: a stroke stands out from the box-blurred image (smooth anatomy
    drops away) *and* from the grey opening (bright) or closing (dark) of the image by a square
    wider than a bold stroke of the text looked for (:func:`edge_square`). The second test
    keeps every letter stroke (the square does not fit in it, so the opening takes it away)
    but not the bright side of an edge (a collimator blade, a film border, an implant): a
    half-plane is wider than any square, the opening keeps it, and so it is no stroke. Without
    it, a diagonal edge that touches a line of text joined the letters into one component that
    :mod:`.candidates` rejected as no text (bench/pixel_phi.py seed 6000, image 19)."""
    img = Image.fromarray(display)
    if scale < 1.0:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BOX)
    radius = max(4, round(_TARGET_LETTER_PX * 1.5))
    smooth = img.filter(ImageFilter.BoxBlur(radius)).filter(ImageFilter.BoxBlur(radius))
    pixels = np.asarray(img)
    diff = pixels.astype(np.int16) - np.asarray(smooth, dtype=np.int16)
    square = (edge_square(scale, config),) * 2
    opened = ndimage.grey_opening(pixels, size=square, mode="nearest").astype(np.int16)
    closed = ndimage.grey_closing(pixels, size=square, mode="nearest").astype(np.int16)
    signed = pixels.astype(np.int16)
    return [
        (name, Image.fromarray(np.where(strokes, 0, 255).astype(np.uint8)))
        for name, strokes in (
            ("bright", (diff >= config.contrast) & (signed - opened >= config.contrast)),
            ("dark", (-diff >= config.contrast) & (closed - signed >= config.contrast)),
        )
    ]


def edge_square(scale: float, config: OcrConfig) -> int:
    """Side (odd, pixels of the working scale) of the square that the edge test of
    :func:`text_views` opens and closes with: 0.8 of the smallest font size looked for, 19 px
    at full resolution and 15 px for a downscaled chest CR. Bold stems are ~0.2 of the font
    size (DejaVu Sans Bold; Liberation ~0.15), so text up to four times the smallest size keeps
    whole strokes; larger bold text keeps their outlines, still a candidate line. A wider
    square (27 px) let sharp MR anatomy through as strokes: 3 of 20 clean MR2 images of
    bench/pixel_phi.py seeds 3000 and 5000 were blanked, none with 19 px."""
    return max(3, round(_STROKE_ROOM * config.min_text_px * scale)) | 1


@dataclass(frozen=True)
class Reading:
    """The words read in one displayed image, and where its text views have strokes."""

    words: list[Word]
    strokes: dict[str, np.ndarray]  # each view's strokes (bool, at ``scale`` of the image)
    scale: float


@dataclass(frozen=True)
class Band:
    """One candidate text line of one text view: a page of the TIFF Tesseract reads."""

    view: str
    box: Box  # in the view's pixels (working scale)
    rows: tuple[int, int]  # the rows its letters fill (view's pixels): words are clipped to them


@dataclass(frozen=True)
class Prepared:
    """An image made ready to read: its text views' strokes and its candidate text lines as
    the pages of one TIFF (``None``: no candidate, nothing to read)."""

    strokes: dict[str, np.ndarray]
    scale: float
    shape: tuple[int, int]
    pages: tuple[Image.Image, ...] | None
    bands: tuple[Band, ...]


def prepare(display: Display, config: OcrConfig | None = None) -> Prepared:
    """The text views of one displayed image and its candidate text lines (:mod:`.candidates`):
    each padded line box cropped from its view, with a white border, one page each (a line is
    read on its own, whatever else the image holds), so that Tesseract reads a few small pages,
    not two megapixels."""
    config = config or OcrConfig()
    scale = working_scale(display.shape, config)
    strokes = {name: np.asarray(view) == 0 for name, view in text_views(display, scale, config)}
    smallest = _LOWER_CASE * config.min_text_px * scale
    largest = _LARGEST_TEXT_PX * scale
    bands = [
        Band(name, line.box, line.rows)
        for name, mask in strokes.items()
        for line in text_lines(mask, smallest, largest)
    ]
    shape = (int(display.shape[0]), int(display.shape[1]))
    if not bands:
        return Prepared(strokes, scale, shape, None, ())
    pages = []
    for band in bands:
        x, y, w, h = band.box
        cut = np.where(strokes[band.view][y : y + h, x : x + w], 0, 255).astype(np.uint8)
        pages.append(ImageOps.expand(Image.fromarray(cut), border=_BORDER, fill=255))
    return Prepared(strokes, scale, shape, tuple(pages), tuple(bands))


def read_prepared(
    prep: Prepared, config: OcrConfig | None = None, *, psm: int | None = None
) -> Reading:
    """Every word Tesseract reads in a prepared image's candidate lines, boxed in its pixels."""
    config = config or OcrConfig()
    if prep.pages is None:
        return Reading([], prep.strokes, prep.scale)
    psm = config.psm if psm is None else psm
    height, width = prep.shape
    found = []
    for word in read_pages(list(prep.pages), psm, config, invert=False):
        if not 1 <= word.page <= len(prep.bands):
            continue
        band = prep.bands[word.page - 1]
        bx, by, bw, bh = band.box
        x, y, w, h = word.box
        slack = (band.rows[1] - band.rows[0]) // 8  # anti-aliasing, accents, descenders
        left = max(x - _BORDER, 0) + bx
        top = max(y - _BORDER + by, band.rows[0] - slack)
        right = min(x + w - _BORDER, bw) + bx
        bottom = min(y + h - _BORDER + by, band.rows[1] + slack, by + bh)
        x0, y0 = max(0, int(left / prep.scale)), max(0, int(top / prep.scale))
        x1 = min(width, int(np.ceil(right / prep.scale)))
        y1 = min(height, int(np.ceil(bottom / prep.scale)))
        if x1 > x0 and y1 > y0:
            found.append(Word(word.text, word.conf, (x0, y0, x1 - x0, y1 - y0), band.view))
    return Reading(found, prep.strokes, prep.scale)


def find_words(
    display: Display, config: OcrConfig | None = None, *, psm: int | None = None
) -> Reading:
    """Every word read in the candidate text lines of one displayed image's text views, boxed
    in its pixels. ``psm`` overrides the configured page segmentation (11, sparse text, finds
    words that automatic layout (3) drops)."""
    return read_prepared(prepare(display, config), config, psm=psm)


def extend_along_line(box: Box, reading: Reading, gap: float = 1.5) -> Box:
    """Grow a text line's box sideways over the strokes (either view) that continue it (words
    of the line Tesseract did not read), across at most ``gap`` line heights of empty space and
    by at most 8 line heights."""
    x, y, w, h = box
    s = reading.scale
    band = slice(int(y * s), int(np.ceil((y + h) * s)))
    rows = np.logical_or(*(mask[band] for mask in reading.strokes.values()))
    if rows.size == 0:
        return box
    columns = np.asarray(rows.any(axis=0), dtype=bool)
    step = max(1, int(gap * h * s))
    reach = int(_MAX_EXTEND * h * s)
    left, right = int(x * s), min(len(columns), int(np.ceil((x + w) * s)))
    left, right = grow_span(columns, left, right, step, reach)
    x0, x1 = min(x, int(left / s)), max(x + w, int(np.ceil(right / s)))
    return x0, y, x1 - x0, h


def crop_views(display: Display, box: Box, letter_px: int) -> list[Image.Image]:
    """A padded box of the displayed image as Tesseract reads it best, four ways: grey,
    inverted, and thresholded half-way from the median to the brightest and to the darkest
    value (burned-in text is usually one of those; Otsu's global threshold loses white text on
    a light gradient); letters upscaled to ~40 px, a border of background around them."""
    x, y, w, h = box
    pad = max(16, letter_px)
    crop = display[max(0, y - pad) : y + h + pad, max(0, x - pad) : x + w + pad].astype(np.int16)
    med = int(np.median(crop))
    bright = crop > (med + int(crop.max())) // 2
    dark = crop < (med + int(crop.min())) // 2
    factor = 40.0 / max(letter_px, 1)
    pages = []
    for arr in (crop, 255 - crop, np.where(bright, 0, 255), np.where(dark, 0, 255)):
        img = Image.fromarray(arr.astype(np.uint8))
        if factor > 1.0:
            size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
            img = img.resize(size, Image.Resampling.BICUBIC)
        fill = int(np.median(np.asarray(img)))
        pages.append(ImageOps.expand(img, border=_BORDER, fill=fill))
    return pages


def stroke_crop(reading: Reading, view: str, box: Box) -> Image.Image:
    """A line's box in the text view it was read in, cropped to its rows (the box's height)
    with a letter height of margin sideways, letters scaled to ~40 px: the cleanest picture of
    low-contrast text (the grey crop loses it in the anatomy's gradient)."""
    s = reading.scale
    x, y, w, h = box
    strokes = reading.strokes[view]
    top, bottom = int(y * s), int(np.ceil((y + h) * s))
    left, right = max(0, int((x - h) * s)), int(np.ceil((x + w + h) * s))
    img = Image.fromarray(np.where(strokes[top:bottom, left:right], 0, 255).astype(np.uint8))
    factor = 40.0 / max(h * s, 1.0)
    size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    return ImageOps.expand(img.resize(size, Image.Resampling.BILINEAR), border=_BORDER, fill=255)


def read_regions(
    display: Display,
    regions: list[tuple[Box, int, Image.Image]],
    config: OcrConfig | None = None,
) -> list[list[Word]]:
    """A closer look at boxes, each holding letters of the given height: the words read in
    each box's four crop views (:func:`crop_views`) and its stroke crop (:func:`stroke_crop`),
    each read as a uniform block of text. All boxes of an image are the pages of one read (both
    polarities are among the views: no inverted re-reads). It is the reading a person (or an
    OCR check of the output) would try on that box."""
    if not regions:
        return []
    pages = [
        page
        for box, letter_px, strokes in regions
        for page in (*crop_views(display, box, letter_px), strokes)
    ]
    per_region = _CROP_VIEWS + 1
    found: list[list[Word]] = [[] for _ in regions]
    for word in read_pages(pages, _BLOCK_PSM, config, invert=False):
        index = (word.page - 1) // per_region
        if 0 <= index < len(found):
            found[index].append(word)
    return found
