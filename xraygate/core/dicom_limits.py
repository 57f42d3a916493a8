"""Pure checks on what a DICOM header declares, made before anything is decoded or stored.

- :func:`check_image_size`: the image's declared Rows x Columns x Frames x Samples per Pixel
  stays within ``XRAYGATE_MAX_IMAGE_PIXELS``. A 3 MB RLE file can declare 10000 x 10000 pixels
  (and a multi-frame one far more); the SCP refuses it at ingest, and every decoder (inference
  preprocessing, the gateway's renderer, the anonymizer's pixel step) checks again before it
  decodes, so an object that reached the store another way never reaches a worker or a page.
- :func:`check_uid` / :func:`uid_problem`: a UID follows PS3.5 9.1 (digits and dots, at most
  64 characters, no empty component) before it becomes an object key, a path or an index key.
  Leading zeros in a component, which PS3.5 forbids but real modalities send, are accepted:
  they are harmless in a key.
- :func:`max_inflated_bytes`: the most a Deflated data set may inflate to, derived from the
  pixel limit (a deflate bomb is refused while it is being inflated).

Every message is a reason without data values (they may be PHI).
"""

from __future__ import annotations

import re

from pydicom import Dataset

from xraygate.core.errors import ImageTooLarge, InvalidUID

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
UID_MAX_LENGTH = 64
#: Room for everything but the pixels in an inflated data set: 64 MiB.
HEADER_MARGIN_BYTES = 64 * 1024 * 1024
#: The widest sample pydicom decodes (64-bit float pixel data) in bytes.
MAX_SAMPLE_BYTES = 8


def _count(ds: Dataset, keyword: str, default: int) -> int:
    """A non-negative integer attribute; ImageTooLarge when it is not one (we cannot bound it)."""
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return default
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise ImageTooLarge(f"{keyword} is not an integer") from exc
    if number < 0:
        raise ImageTooLarge(f"{keyword} is negative")
    return number


def declared_samples(ds: Dataset) -> int:
    """Rows x Columns x Number of Frames x Samples per Pixel as the header declares them
    (0 when the object has no image)."""
    rows, columns = _count(ds, "Rows", 0), _count(ds, "Columns", 0)
    frames = _count(ds, "NumberOfFrames", 1) or 1
    samples = _count(ds, "SamplesPerPixel", 1) or 1
    return rows * columns * frames * samples


def check_image_size(ds: Dataset, limit: int) -> None:
    """ImageTooLarge when the image declares more than ``limit`` samples (0 = no limit)."""
    if limit <= 0:
        return
    declared = declared_samples(ds)
    if declared > limit:
        raise ImageTooLarge(f"image too large: {declared} samples, limit {limit}")


def check_before_decode(ds: Dataset, limit: int | None = None) -> None:
    """The check every pixel decoder makes first; ``limit`` defaults to the setting."""
    if limit is None:
        from xraygate.core.config import get_settings

        limit = get_settings().max_image_pixels
    check_image_size(ds, limit)


def max_inflated_bytes(limit: int) -> int:
    """The most a Deflated data set may inflate to when images are limited to ``limit``
    samples (0 = no limit: returns 0)."""
    if limit <= 0:
        return 0
    return limit * MAX_SAMPLE_BYTES + HEADER_MARGIN_BYTES


def uid_problem(value: object) -> str | None:
    """Why ``value`` is not a valid UID (None when it is one)."""
    if not isinstance(value, str):
        return "is not text"
    if not value:
        return "is empty"
    if len(value) > UID_MAX_LENGTH:
        return f"is longer than {UID_MAX_LENGTH} characters"
    if not _UID.fullmatch(value):
        return "is not digits separated by single dots"
    return None


def check_uid(value: object, name: str) -> str:
    """``value`` when it is a valid UID; InvalidUID (naming ``name``, not the value) if not."""
    problem = uid_problem(value)
    if problem is not None:
        raise InvalidUID(f"{name} {problem}")
    assert isinstance(value, str)
    return value
