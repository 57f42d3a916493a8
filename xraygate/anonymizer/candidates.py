"""Where a text view may hold text: a cheap look (numpy, scipy) before Tesseract's expensive one.

A text view (black strokes on white, see :mod:`.ocr`) of an X-ray is mostly white, with blobs of
anatomy (rib edges, bone, bowel gas), collimator bars and noise specks. Burned-in text is a row
of *letter-sized* marks standing next to each other at one height. So the strokes are split into
connected components (8-connected); a component is a letter-like *mark* when its height lies
between 0.35 x the smallest letters looked for and the largest font size, it is not a long thin
line (40+ heights wide) and not a solid blob (unless narrow: ``I``, ``1``). Marks of similar
height (within 1.8x) that overlap vertically (60 % of the smaller) and stand at most one height
apart form a *line* (transitively), unless it climbs like a staircase (1.6+ mark heights high).
A line of two or more marks, or one run of touching letters 2.5 heights wide, is a candidate: it
grows sideways over the strokes that continue it (letters fused with anatomy that the grouping
lost; gaps of up to 1.5 heights, 10 heights at most each way), and its box, padded (two heights
sideways, one up and down), is what Tesseract reads, with the rows its letters fill (words read
in the box are clipped to them). A view without a candidate is not read at all.

This only ever *removes* what cannot be part of a text line; text that merges with anatomy into
one large blob is the known blind spot (as it is for Tesseract's own layout analysis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

Box = tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class Line:
    """A candidate text line: the padded box to read, and the rows its letters fill (words
    read in the box are clipped to them: the padding holds anatomy, not more of the line)."""

    box: Box
    rows: tuple[int, int]  # first row, row after the last


_LOW = 0.35  # smallest mark (of the smallest letter size) that counts: a lower-case letter
_HIGH = 1.0  # largest mark: the largest font size (its em: accents, brackets, descenders)
_THIN = 40.0  # wider than this many heights: a line (collimator edge, border), not letters
_GAP = 1.0  # marks of one text line stand at most this many heights apart
_OVERLAP = 0.6  # ... and overlap vertically by this much of the smaller one's height
_SIMILAR = 1.8  # ... and differ in height by at most this factor
_STRAIGHT = 1.6  # a line is at most this many of its tallest mark's heights high
_MIN_MARKS = (
    2  # marks in a candidate line (a name, an ID or a date has more: its start may be cut off)
)
_FUSED = 2.5  # ... or one run of touching letters this many heights wide
_SOLID = 0.8  # a mark filling more of its box is a blob (bone), unless narrow (I, l, 1)
_NARROW = 0.45
_MIN_AREA = 6  # pixels: noise specks never count
_BLOCK = 512  # marks compared at a time (memory)


def text_lines(strokes: np.ndarray[Any, Any], smallest: float, largest: float) -> list[Line]:
    """The candidate text lines among ``strokes`` (bool), for letters ``smallest`` to
    ``largest`` pixels high, in the view's pixels."""
    labels, count = ndimage.label(strokes, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return []
    slices = ndimage.find_objects(labels)
    area = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    y0 = np.array([s[0].start for s in slices])
    y1 = np.array([s[0].stop for s in slices])
    x0 = np.array([s[1].start for s in slices])
    x1 = np.array([s[1].stop for s in slices])
    h, w = y1 - y0, x1 - x0
    fill = area / np.maximum(h * w, 1)
    letter = (
        (h >= _LOW * smallest)
        & (h <= _HIGH * largest)
        & (w <= _THIN * h)
        & (area >= _MIN_AREA)
        & ((fill <= _SOLID) | (w <= _NARROW * h))
    )
    idx = np.flatnonzero(letter)
    if idx.size == 0:
        return []
    rows, cols = strokes.shape
    lines: list[Line] = []
    for members in _group(y0[idx], y1[idx], x0[idx], x1[idx]):
        m = idx[members]
        gx0, gx1 = int(x0[m].min()), int(x1[m].max())
        gy0, gy1 = int(y0[m].min()), int(y1[m].max())
        height = int(np.median(h[m]))
        if gy1 - gy0 > _STRAIGHT * int(h[m].max()):
            continue  # a staircase of blobs, not a line of letters
        if len(m) < _MIN_MARKS and (gx1 - gx0) < _FUSED * height:
            continue
        by0, by1 = max(0, gy0 - height), min(rows, gy1 + height)
        gx0, gx1 = _extend(np.asarray(strokes[gy0:gy1].any(axis=0)), gx0, gx1, height)
        bx0, bx1 = max(0, gx0 - 2 * height), min(cols, gx1 + 2 * height)
        lines.append(Line((bx0, by0, bx1 - bx0, by1 - by0), (gy0, gy1)))
    return merge(lines)


def _extend(columns: np.ndarray[Any, Any], left: int, right: int, height: int) -> tuple[int, int]:
    """Grow a line sideways over the strokes that continue it (letters fused with anatomy that
    the grouping lost), across gaps of at most 1.5 heights, by at most 10 heights each way."""
    return grow_span(columns, left, right, max(1, int(1.5 * height)), 10 * height)


def grow_span(
    columns: np.ndarray[Any, Any], left: int, right: int, step: int, reach: int
) -> tuple[int, int]:
    """``[left, right)`` grown over the set entries of ``columns`` that continue it, jumping
    gaps shorter than ``step``, by at most ``reach`` each way."""
    last = min(len(columns), right + reach)
    while right < last:
        ahead = np.flatnonzero(columns[right : min(last, right + step)])
        if ahead.size == 0:
            break
        right += int(ahead[-1]) + 1
    first = max(0, left - reach)
    while left > first:
        start = max(first, left - step)
        behind = np.flatnonzero(columns[start:left])
        if behind.size == 0 or start + int(behind[0]) == left:
            break
        left = start + int(behind[0])
    return left, right


def _same_line(a: Box, b: Box) -> bool:
    """Boxes that overlap sideways and share at least half the smaller one's rows."""
    rows = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and rows >= 0.5 * min(a[3], b[3])


def _similar(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Lines of similar letter height (a small line inside a big one's box stays a page of
    its own: in the big one's page its words drown among the big one's marks)."""
    ha, hb = a[1] - a[0], b[1] - b[0]
    return max(ha, hb) <= _SIMILAR * max(min(ha, hb), 1)


def merge(lines: list[Line]) -> list[Line]:
    """Union the lines of similar height whose boxes overlap on one line (boxes of different
    lines may overlap: each is read on its own page)."""
    out = sorted(lines, key=lambda line: line.box)
    changed = True
    while changed:
        changed = False
        for i, a in enumerate(out):
            for j in range(i + 1, len(out)):
                b = out[j]
                if _same_line(a.box, b.box) and _similar(a.rows, b.rows):
                    x0, y0 = min(a.box[0], b.box[0]), min(a.box[1], b.box[1])
                    x1 = max(a.box[0] + a.box[2], b.box[0] + b.box[2])
                    y1 = max(a.box[1] + a.box[3], b.box[1] + b.box[3])
                    rows = (min(a.rows[0], b.rows[0]), max(a.rows[1], b.rows[1]))
                    out[i] = Line((x0, y0, x1 - x0, y1 - y0), rows)
                    del out[j]
                    changed = True
                    break
            if changed:
                break
    return sorted(out, key=lambda line: (line.box[1], line.box[0]))


def _group(
    y0: np.ndarray[Any, Any],
    y1: np.ndarray[Any, Any],
    x0: np.ndarray[Any, Any],
    x1: np.ndarray[Any, Any],
) -> list[np.ndarray[Any, Any]]:
    """Indices of marks grouped into lines (transitively: connected components of the graph
    of neighbouring pairs), compared a block of rows at a time."""
    n = len(y0)
    h = (y1 - y0).astype(np.float64)
    pairs: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = []
    for start in range(0, n, _BLOCK):
        r = slice(start, min(n, start + _BLOCK))
        overlap = np.minimum(y1[r, None], y1[None, :]) - np.maximum(y0[r, None], y0[None, :])
        small = np.minimum(h[r, None], h[None, :])
        big = np.maximum(h[r, None], h[None, :])
        gap = np.maximum(np.maximum(x0[None, :] - x1[r, None], x0[r, None] - x1[None, :]), 0)
        near = (overlap >= _OVERLAP * small) & (big <= _SIMILAR * small) & (gap <= _GAP * big)
        a, b = np.nonzero(near)
        pairs.append((a + start, b))
    rows = np.concatenate([a for a, _ in pairs])
    cols = np.concatenate([b for _, b in pairs])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph.tocsr(), directed=False)
    order = np.argsort(component, kind="stable")
    bounds = np.flatnonzero(np.diff(component[order])) + 1
    return list(np.split(order, bounds))
