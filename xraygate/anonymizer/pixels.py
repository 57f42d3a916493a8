"""Burned-in text: site rules (rectangles per device) and the pixel / overlay cleaning they drive.

An image whose BurnedInAnnotation is YES, or absent for a modality that often burns text in
(SC, US, OT by default), may leave only if a rule for its Manufacturer / ManufacturerModelName
exists: the pixels are decoded, the rule's rectangles blanked, and the image re-encoded as
uncompressed Explicit VR Little Endian with BurnedInAnnotation NO (Clean Pixel Data, 113101).

Site rules live in a JSON file (``XRAYGATE_DEID_RULES_FILE``)::

    {"pixel_rules": [{"manufacturer": "ACME", "model": "CR-1",
                      "rectangles": [[x, y, width, height], ...]}],
     "safe_private": [{"group": "0019", "creator": "ACME 1.0", "elements": ["10", "11"]}]}

``model`` may be omitted (any model of that manufacturer). ``safe_private`` lists private
elements known to be safe (Retain Safe Private option) by group, creator and element byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from xraygate.core.dicom_limits import check_before_decode
from xraygate.core.errors import ConfigurationError, DeidentificationError, DicomLimitError

Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class PixelRule:
    manufacturer: str
    model: str | None
    rectangles: tuple[Rect, ...]


@dataclass(frozen=True)
class SiteRules:
    pixel_rules: tuple[PixelRule, ...] = ()
    safe_private: frozenset[tuple[int, str, int]] = frozenset()  # (group, CREATOR, element byte)

    def rule_for(self, ds: Dataset) -> PixelRule | None:
        maker = str(ds.get("Manufacturer", "") or "").strip().upper()
        model = str(ds.get("ManufacturerModelName", "") or "").strip().upper()
        fallback = None
        for rule in self.pixel_rules:
            if rule.manufacturer.upper() != maker:
                continue
            if rule.model is not None and rule.model.upper() == model:
                return rule
            if rule.model is None:
                fallback = rule
        return fallback


def load_rules(path: Path | None) -> SiteRules:
    """Read the site rules file; no file means no pixel rules and no safe private elements."""
    if path is None:
        return SiteRules()
    try:
        data = json.loads(path.read_text("utf-8"))
        return parse_rules(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"bad de-identification rules file {path}: {exc}") from exc


def parse_rules(data: dict[str, Any]) -> SiteRules:
    rules = tuple(
        PixelRule(
            str(r["manufacturer"]),
            str(r["model"]) if r.get("model") not in (None, "", "*") else None,
            tuple(_rect(rect) for rect in r["rectangles"]),
        )
        for r in data.get("pixel_rules", [])
    )
    safe = frozenset(
        (int(str(e["group"]), 16), str(e["creator"]).strip().upper(), int(str(el), 16))
        for e in data.get("safe_private", [])
        for el in e["elements"]
    )
    return SiteRules(rules, safe)


def _rect(value: list[int]) -> Rect:
    x, y, w, h = (int(v) for v in value)
    if min(x, y) < 0 or min(w, h) <= 0:
        raise ValueError(f"bad rectangle {value}")
    return x, y, w, h


def may_carry_burned_in_text(ds: Dataset, modalities: frozenset[str]) -> bool:
    """BurnedInAnnotation YES, or absent for a modality that often burns text in."""
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return True
    if flag == "NO":
        return False
    return str(ds.get("Modality", "") or "").strip().upper() in modalities


def clean_pixels(ds: Dataset, rule: PixelRule) -> None:
    """Blank the rule's rectangles in every frame and re-encode uncompressed (Explicit VR LE)."""
    arr = decoded_pixels(ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    blank = _blank_value(ds, arr, photometric)
    view = frames_of(ds, arr)
    for x, y, w, h in rule.rectangles:
        view[:, y : y + h, x : x + w, ...] = blank
    store_pixels(ds, arr)
    ds.BurnedInAnnotation = "NO"


def decoded_pixels(ds: Dataset) -> np.ndarray[Any, Any]:
    """A writable, decoded copy of the pixel data; DeidentificationError when it cannot be
    (or when the header declares more than ``XRAYGATE_MAX_IMAGE_PIXELS`` samples)."""
    try:
        check_before_decode(ds)
    except DicomLimitError as exc:
        raise DeidentificationError(str(exc)) from exc
    try:
        return np.array(ds.pixel_array)
    except Exception as exc:  # any decoder failure means we cannot clean: refuse
        raise DeidentificationError(f"pixel data cannot be decoded: {type(exc).__name__}") from exc


def frames_of(ds: Dataset, arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The pixel array with a leading frame axis (a view: writes go to ``arr``)."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return arr if frames > 1 else arr[np.newaxis, ...]


def store_pixels(ds: Dataset, arr: np.ndarray[Any, Any]) -> None:
    """Write changed pixels back, uncompressed (Explicit VR Little Endian)."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    for _ in ds.iterall():  # decode every raw element: the encoding changes on write
        pass
    if photometric.startswith("YBR") and ds.get("SamplesPerPixel", 1) == 3:
        photometric = "RGB"  # pydicom converts decoded YBR JPEG data to RGB
    ds.set_pixel_data(
        arr, photometric, int(ds.get("BitsStored", arr.itemsize * 8)), generate_instance_uid=False
    )
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def _blank_value(ds: Dataset, arr: np.ndarray[Any, Any], photometric: str) -> int:
    if photometric == "MONOCHROME1":  # the largest stored value shows as black
        if ds.get("PixelRepresentation", 0):
            return int(2 ** (int(ds.get("BitsStored", 16)) - 1) - 1)
        return int(2 ** int(ds.get("BitsStored", 16)) - 1)
    return int(np.iinfo(arr.dtype).min) if ds.get("PixelRepresentation", 0) else 0


def clean_overlays(ds: Dataset, rule: PixelRule | None) -> bool:
    """Clean Graphics on overlays: blank the rule's rectangles in each overlay plane, or remove
    every overlay group when the device has no rule. True when something was cleaned."""
    tags = list(ds.keys())
    groups = sorted({tag >> 16 for tag in tags if 0x6000 <= tag >> 16 <= 0x601E})
    changed = False
    for group in groups:
        data_tag = (group << 16) | 0x3000
        if data_tag not in ds:
            continue
        if rule is None:
            for tag in [t for t in tags if t >> 16 == group]:
                del ds[tag]
        else:
            _blank_overlay(ds, group, rule)
        changed = True
    return changed


def _blank_overlay(ds: Dataset, group: int, rule: PixelRule) -> None:
    rows = int(ds[(group << 16) | 0x0010].value)
    cols = int(ds[(group << 16) | 0x0011].value)
    origin = ds.get((group << 16) | 0x0050)
    oy, ox = (int(v) - 1 for v in origin.value) if origin is not None else (0, 0)
    elem = ds[(group << 16) | 0x3000]
    bits = np.unpackbits(np.frombuffer(elem.value, dtype=np.uint8), bitorder="little")
    plane = bits[: rows * cols].reshape(rows, cols).copy()
    for x, y, w, h in rule.rectangles:
        y0, x0 = max(0, y - oy), max(0, x - ox)
        plane[y0 : max(0, y - oy + h), x0 : max(0, x - ox + w)] = 0
    packed = np.packbits(plane.ravel(), bitorder="little").tobytes()
    elem.value = packed + (b"\x00" if len(packed) % 2 else b"")
