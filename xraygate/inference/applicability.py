"""May the model read this image? Only frontal chest radiographs; everything else is recorded as
not applicable with the reason, never scored.

Rules, each configurable through settings:

- Modality must be one of ``XRAYGATE_INFER_MODALITIES`` (CR, DX, DR).
- DX *For Processing* images are not display-ready: not scored.
- The body part must be chest: BodyPartExamined, else ProtocolName / StudyDescription /
  SeriesDescription must contain one of ``XRAYGATE_INFER_CHEST_TERMS``. An explicit body part
  that is not chest wins over descriptions.
- The view must be frontal: ViewPosition PA or AP. A lateral (LL/RL/LAT) view is refused; an
  absent view is accepted only when ``XRAYGATE_INFER_ACCEPT_MISSING_VIEW`` is true (default).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import Dataset

from xraygate.core.config import Settings

DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
FRONTAL = {"PA", "AP"}


@dataclass(frozen=True)
class Verdict:
    applicable: bool
    reason: str = ""


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return str(value or "").strip().upper()


def check(ds: Dataset, settings: Settings) -> Verdict:
    modality = _text(ds, "Modality")
    if modality not in {m.upper() for m in settings.infer_modalities}:
        return Verdict(False, f"modality {modality or 'missing'} is not a radiograph we read")
    if str(ds.get("SOPClassUID", "")) == DX_FOR_PROCESSING:
        return Verdict(False, "DX for processing: pixels are not display-ready")
    terms = [t.upper() for t in settings.infer_chest_terms]
    body_part = _text(ds, "BodyPartExamined")
    if body_part and not any(t in body_part for t in terms):
        return Verdict(False, f"body part {body_part} is not chest")
    if not body_part:
        described = " ".join(
            _text(ds, k) for k in ("ProtocolName", "StudyDescription", "SeriesDescription")
        )
        if not any(t in described for t in terms):
            return Verdict(False, "no body part or description says chest")
    view = _text(ds, "ViewPosition")
    if view and view not in FRONTAL:
        return Verdict(False, f"view {view} is not frontal (PA/AP)")
    if not view and not settings.infer_accept_missing_view:
        return Verdict(False, "view position missing")
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        return Verdict(False, "no pixel data")
    return Verdict(True)
