"""May the model read this image? Only frontal chest radiographs; everything else is recorded as
not applicable with the reason, never scored.

Rules, each configurable through settings where a site may differ:

- Modality must be one of ``XRAYGATE_INFER_MODALITIES`` (CR, DX, DR).
- The SOP class must be one that carries a projection radiograph: Computed Radiography Image
  Storage or Digital X-Ray Image Storage - For Presentation. A Secondary Capture (a screenshot,
  a scanned film, a report page) is refused even when its Modality says CR; DX *For Processing*
  images are not display-ready; mammography and intra-oral X-ray are not chest images.
- The body part must be chest: BodyPartExamined, else ProtocolName / StudyDescription /
  SeriesDescription must contain one of ``XRAYGATE_INFER_CHEST_TERMS``. An explicit body part
  that is not chest wins over descriptions.
- The view must be frontal: ViewPosition PA or AP; when ViewPosition is absent or empty, the
  first item of ViewCodeSequence (SNOMED CT ``272479007`` postero-anterior / ``399348003``
  antero-posterior, or their legacy SRT codes ``R-10214`` / ``R-10206``). Any other view is
  refused; an image with neither is accepted only when ``XRAYGATE_INFER_ACCEPT_MISSING_VIEW`` is
  true (default false).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from xraygate.core.config import Settings

CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
#: Image storage classes whose pixels are a projection radiograph the model may read.
RADIOGRAPH_SOP_CLASSES = frozenset({CR_IMAGE, DX_FOR_PRESENTATION})
FRONTAL = {"PA", "AP"}
#: ViewCodeSequence codes (CID 4010 "DX View") of the frontal views, by (scheme, code).
FRONTAL_VIEW_CODES: dict[tuple[str, str], str] = {
    ("SCT", codes.SCT.PosteroAnterior.value): "PA",
    ("SCT", codes.SCT.AnteroPosterior.value): "AP",
    ("SRT", "R-10214"): "PA",
    ("SRT", "R-10206"): "AP",
}


@dataclass(frozen=True)
class Verdict:
    applicable: bool
    reason: str = ""


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return str(value or "").strip().upper()


def sop_class_of(ds: Dataset) -> str:
    """SOPClassUID, else the file meta's MediaStorageSOPClassUID; empty when neither."""
    value = str(ds.get("SOPClassUID", "") or "").strip()
    meta = getattr(ds, "file_meta", None)
    if not value and meta is not None:
        value = str(meta.get("MediaStorageSOPClassUID", "") or "").strip()
    return value


def _sop_class_verdict(ds: Dataset) -> Verdict | None:
    sop_class = sop_class_of(ds)
    if sop_class == DX_FOR_PROCESSING:
        return Verdict(False, "DX for processing: pixels are not display-ready")
    if sop_class not in RADIOGRAPH_SOP_CLASSES:
        name = UID(sop_class).name if sop_class else "missing"
        return Verdict(False, f"SOP class {name} does not carry a radiograph we read")
    return None


def view_of(ds: Dataset) -> tuple[str, str]:
    """(view, how it was found): ViewPosition, else ViewCodeSequence; ("", "") when neither.

    A coded view that is not a frontal one comes back as ``scheme:code`` so the reason names it.
    """
    position = _text(ds, "ViewPosition")
    if position:
        return position, "ViewPosition"
    items = ds.get("ViewCodeSequence") or []
    if not items:
        return "", ""
    item = items[0]
    scheme = str(item.get("CodingSchemeDesignator", "") or "").strip().upper()
    code = str(item.get("CodeValue", "") or "").strip().upper()
    if not code:
        return "", ""
    return FRONTAL_VIEW_CODES.get((scheme, code), f"{scheme}:{code}"), "ViewCodeSequence"


def _view_verdict(ds: Dataset, settings: Settings) -> Verdict | None:
    view, source = view_of(ds)
    if view and view not in FRONTAL:
        where = "" if source == "ViewPosition" else f" ({source})"
        return Verdict(False, f"view {view}{where} is not frontal (PA/AP)")
    if not view and not settings.infer_accept_missing_view:
        return Verdict(False, "view position missing (no ViewPosition or ViewCodeSequence)")
    return None


def _body_part_verdict(ds: Dataset, settings: Settings) -> Verdict | None:
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
    return None


def check(ds: Dataset, settings: Settings) -> Verdict:
    modality = _text(ds, "Modality")
    if modality not in {m.upper() for m in settings.infer_modalities}:
        return Verdict(False, f"modality {modality or 'missing'} is not a radiograph we read")
    refused = (
        _sop_class_verdict(ds) or _body_part_verdict(ds, settings) or _view_verdict(ds, settings)
    )
    if refused is not None:
        return refused
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        return Verdict(False, "no pixel data")
    return Verdict(True)
