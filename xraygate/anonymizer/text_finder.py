"""Which of the words OCR reads in an image are text to remove, which are allowed markers.

Tesseract also "reads" words in anatomy (rib edges, bowel gas, collimator borders): short, low
confidence strings such as ``ae`` or ``we``. Words are first grouped into text lines (similar
height, overlapping vertically, horizontally close: the two text views' reads of one string
fall on one line too). A line is then judged as a whole, on its tokens (letters and digits of a
word, upper case) that are neither allow-listed (laterality and view markers) nor a piece of a
long allow-listed token (``ORTAB`` of ``PORTABLE``) or one misread by a character:

- text when one of them reads confidently: 2+ characters at confidence >= 85, or 5+ at >= 60,
  or 5+ written like burned-in text (2+ capitals or 6+ digits) at >= 30;
- noise when none is worth a closer look (5+ characters, or 2+ at confidence >= 30);
- otherwise a closer look decides: the line's box, cropped from the displayed image, letters
  scaled to ~40 px, read again four ways (grey, inverted, thresholded towards the brightest and
  the darkest value; each as a block of text: what an OCR check of the output would try on that
  box). Text when that reading gives a token (not allow-listed) of 6+ characters written with
  2+ capitals or 6+ digits, or of 5+ at confidence >= 45, or 3+ at >= 75 (junk in anatomy reads
  mostly in lower case).

Allow-listed tokens are reported as kept (they stay in the image unless their line is text).
A text line's box grows sideways over the strokes that continue it (``DOB`` read, the date after
it not: both go), then comes back padded, merged with the boxes it overlaps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from xraygate.anonymizer.ocr import (
    SPARSE_PSM,
    Box,
    Display,
    OcrConfig,
    Prepared,
    Word,
    extend_along_line,
    prepare,
    read_prepared,
    read_regions,
    stroke_crop,
)

# Non-PHI tokens that may stay in an image: laterality and view / position markers.
DEFAULT_ALLOWED = ("L", "R", "LT", "RT", "PA", "AP", "ERECT", "SUPINE", "PORTABLE")
_NOT_ALNUM = re.compile(r"[^0-9A-Z]")


def token(text: str) -> str:
    """A word as compared to the allow-list: upper case, letters and digits only."""
    return _NOT_ALNUM.sub("", text.upper())


@dataclass(frozen=True)
class Found:
    """What one image holds: boxes of text to remove, allow-listed tokens seen."""

    boxes: tuple[Box, ...]
    kept: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.boxes)


class TextFinder:
    def __init__(self, allowed: Iterable[str] = DEFAULT_ALLOWED, ocr: OcrConfig | None = None):
        self.allowed = frozenset(token(t) for t in allowed if token(t))
        self.ocr = ocr or OcrConfig()

    def find(self, display: Display, prepared: Prepared | None = None) -> Found:
        """Text found reading with automatic page layout (the configured ``psm``)."""
        return self._find(display, prepared, None, _confident, closer_look=True)

    def verify(self, display: Display, prepared: Prepared | None = None) -> Found:
        """A second, independent and stricter look at an image the first found clean (or clean
        after blanking): sparse-text segmentation (``psm`` 11, no layout analysis, which drops
        text standing next to anatomy as part of a picture) and another bar for text (3+
        characters at confidence >= 85, 4+ at >= 75, 5+ at >= 60)."""
        return self._find(display, prepared, SPARSE_PSM, _strictly_confident, closer_look=False)

    def look(self, display: Display) -> Found:
        """Both reads of one image (its candidate text lines prepared once): the first, and
        when it finds nothing the second, so that an image is clean only when both see no
        text in it."""
        prepared = prepare(display, self.ocr)
        found = self.find(display, prepared)
        if found:
            return found
        second = self.verify(display, prepared)
        return Found(second.boxes, tuple(sorted({*found.kept, *second.kept})))

    def _find(
        self,
        display: Display,
        prepared: Prepared | None,
        psm: int | None,
        confident: Callable[[str, float], bool],
        *,
        closer_look: bool,
    ) -> Found:
        prepared = prepared or prepare(display, self.ocr)
        reading = read_prepared(prepared, self.ocr, psm=psm)
        words = [w for w in reading.words if token(w.text)]
        height, width = display.shape[:2]
        judged = [(line, *self._judge(line, confident, closer_look)) for line in _lines(words)]
        doubtful = [line for line, verdict, _ in judged if verdict == "doubtful"]
        regions = [
            (
                box,
                min(w.box[3] for w in line if len(token(w.text)) >= 2),
                stroke_crop(reading, _best(line).view, _union([w.box for w in _main_view(line)])),
            )
            for line in doubtful
            for box in [_union([w.box for w in line])]
        ]
        closer = dict(zip(map(id, doubtful), read_regions(display, regions, self.ocr), strict=True))
        boxes: list[Box] = []
        kept: set[str] = set()
        for line, verdict, markers in judged:
            if verdict == "text" or (verdict == "doubtful" and self._confirmed(closer[id(line)])):
                box = extend_along_line(_union([w.box for w in _main_view(line)]), reading)
                boxes.append(_pad(box, width, height))
            else:
                kept.update(markers)
        return Found(tuple(_merge(boxes)), tuple(sorted(kept)))

    def _judge(
        self, line: list[Word], confident: Callable[[str, float], bool], closer_look: bool
    ) -> tuple[str, list[str]]:
        """``text``, ``noise`` or ``doubtful`` (a closer look decides), and the allow-listed
        tokens the line holds."""
        tokens = [token(w.text) for w in line]
        markers = [t for t in tokens if t in self.allowed]
        others = [
            (t, w.conf)
            for t, w in zip(tokens, line, strict=True)
            if len(t) >= 2 and not self._marker_like(t)
        ]
        if any(confident(t, c) for t, c in others):
            return "text", markers
        if closer_look and any(
            len(token(w.text)) >= 5 and _shaped(w.text) and w.conf >= 30
            for w in line
            if not self._marker_like(token(w.text))
        ):
            return "text", markers  # a name, an ID or a date, read at low confidence
        if closer_look and any(len(t) >= 5 or (len(t) >= 2 and c >= 30) for t, c in others):
            return "doubtful", markers
        return "noise", markers

    def _confirmed(self, closer: list[Word]) -> bool:
        """Whether the closer look at a doubtful line read text in it."""
        return any(
            _confirms(w.text, w.conf, self._near_marker(token(w.text)))
            and not self._marker_like(token(w.text))
            for w in closer
        )

    def _near_marker(self, tok: str) -> bool:
        """Within two edits of a piece of a long allowed token (a poor read of ``PORTABLE``)."""
        return any(len(a) >= 5 and _within(tok, a) <= 2 for a in self.allowed)

    def _marker_like(self, tok: str) -> bool:
        """An allowed token, a piece of a long one (``ORTAB`` of ``PORTABLE``), or a long one
        misread by one character (``SORTABLE``)."""
        return tok in self.allowed or any(
            len(a) >= 5 and len(tok) >= 2 and (tok in a or _distance(tok, a) <= 1)
            for a in self.allowed
        )


def _within(needle: str, hay: str) -> int:
    """Edits to make ``needle`` a piece of ``hay`` (Sellers' approximate substring match)."""
    prev = [0] * (len(hay) + 1)
    for i, cn in enumerate(needle, 1):
        cur = [i] + [0] * len(hay)
        for j, ch in enumerate(hay, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (cn != ch))
        prev = cur
    return min(prev)


def _distance(a: str, b: str) -> int:
    """Levenshtein distance."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _confident(tok: str, conf: float) -> bool:
    return (len(tok) >= 2 and conf >= 85) or (len(tok) >= 5 and conf >= 60)


def _strictly_confident(tok: str, conf: float) -> bool:
    """The second read's bar: lower for 4+ characters, but 2-character junk (``if`` at 97 in
    a clean chest's anatomy) never counts; PHI is longer."""
    return len(tok) >= 3 and (_confident(tok, conf) or (len(tok) >= 4 and conf >= 75))


def _confirms(text: str, conf: float, near_marker: bool = False) -> bool:
    """Text in a closer look. Its four views read junk in anatomy too, in lower case at low
    confidence (``aoeialll`` at 0, ``nasal`` at 28), while burned-in names, IDs and dates come
    back in capitals or digits even where the confidence is low (``ODETTE`` at 0 next to a
    collimator edge; ``ENCES`` at 25 was junk): 6+ characters with 2+ capitals or 6+ digits
    (unless within two edits of a piece of a long marker: ``RIABDLE`` of ``PORTABLE``), or 5+
    at confidence >= 45, or 3+ at >= 75."""
    tok = token(text)
    return (
        (len(tok) >= 6 and _shaped(text) and not near_marker)
        or (len(tok) >= 5 and conf >= 45)
        or (len(tok) >= 3 and conf >= 75)
    )


def _shaped(text: str) -> bool:
    """Written like burned-in text, not like junk read in anatomy: 2+ capitals, or 6+ digits
    (IDs and dates have 6 or more; ``35.108`` was junk)."""
    return sum(c.isupper() for c in text) >= 2 or sum(c.isdigit() for c in text) >= 6


def _lines(words: list[Word]) -> list[list[Word]]:
    """Words grouped into text lines (transitively: a word joins every line it continues)."""
    lines: list[list[Word]] = []
    for word in words:
        joined = [line for line in lines if any(_same_line(word.box, w.box) for w in line)]
        merged = [word, *(w for line in joined for w in line)]
        lines = [line for line in lines if line not in joined]
        lines.append(merged)
    return lines


def _main_view(line: list[Word]) -> list[Word]:
    """The words of a line read in the view that reads it best: the other view holds the
    halo around the strokes, whose "words" would stretch the box over anatomy."""
    best = _best(line)
    return [w for w in line if w.view == best.view]


def _best(line: list[Word]) -> Word:
    """The line's word that reads best (most characters, most confidence)."""
    return max(line, key=lambda w: len(token(w.text)) * (w.conf + 1))


def _union(boxes: list[Box]) -> Box:
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return x0, y0, x1 - x0, y1 - y0


def _same_line(a: Box, b: Box) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    if not 1 / 3 <= ah / max(bh, 1) <= 3.0:
        return False
    overlap = min(ay + ah, by + bh) - max(ay, by)
    if overlap < 0.5 * min(ah, bh):
        return False
    gap = max(bx - (ax + aw), ax - (bx + bw), 0)
    return gap <= 2 * max(ah, bh)


def _pad(box: Box, width: int, height: int) -> Box:
    """Grow a box by half its height sideways and a third up and down (anti-aliasing, accents,
    descenders, a last letter half read), clipped to the image."""
    x, y, w, h = box
    px, py = max(4, h // 2), max(3, h // 3)
    x0, y0 = max(0, x - px), max(0, y - py)
    x1, y1 = min(width, x + w + px), min(height, y + h + py)
    return x0, y0, x1 - x0, y1 - y0


def _merge(boxes: list[Box]) -> list[Box]:
    """Union overlapping boxes until none overlap."""
    out = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if _overlaps(a, b):
                    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                    x1 = max(a[0] + a[2], b[0] + b[2])
                    y1 = max(a[1] + a[3], b[1] + b[3])
                    out[i] = (x0, y0, x1 - x0, y1 - y0)
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(out, key=lambda b: (b[1], b[0]))


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
