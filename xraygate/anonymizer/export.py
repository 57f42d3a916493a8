"""Export one study's images, de-identified, to the retraining store, with its manifest.

Layout of the export store (``xraygate model train`` reads the NORMAL/ and PNEUMONIA/ folders
once the bucket is copied locally, e.g. with ``xraygate export-pull DIR``)::

    images/NORMAL/<pseudo study uid>_<pseudo sop uid>.dcm      clinician said: no pneumonia
    images/PNEUMONIA/<pseudo study uid>_<pseudo sop uid>.dcm   clinician said: pneumonia
    images/UNLABELED/<pseudo study uid>_<pseudo sop uid>.dcm   no clinician label yet
    manifests/<pseudo study uid>.jsonl                         one JSON line per exported image

A clinician's later finding re-runs the export: the same UIDs come out (keyed hash), the file
moves to its label's folder and the manifest lines carry the new label. Raw objects that cannot
be parsed are quarantined and never written here. Images with burned-in text are blanked by the
pixel step (the manifest line's ``pixel_phi`` says where) or, in ``hold`` mode, held: not
written here, their review thumbnail put in the main store (:func:`held_thumbnail_key`). Our own
"AI key image" (``pacs/``), should a PACS route it back to us, is skipped: never a training input.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from io import BytesIO

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from xraygate.anonymizer.engine import DeidResult
from xraygate.anonymizer.pixel_phi import CheckedDeidentifier, CheckedResult, TextHeld
from xraygate.anonymizer.policy import Label
from xraygate.core.dicom_io import is_ai_display_object
from xraygate.core.errors import BurnedInText, UnparseableInput
from xraygate.core.models import DeidExport, Instance, StudyResult, utcnow
from xraygate.core.models.deid import HELD, held_thumbnail_key
from xraygate.core.storage import ObjectStore, StoredObject

log = logging.getLogger(__name__)


@dataclass
class ExportOutcome:
    instance: Instance
    status: str  # exported | skipped | held | quarantined
    reason: str = ""
    result: DeidResult | None = None
    stored: StoredObject | None = None


@dataclass
class StudyExport:
    outcomes: list[ExportOutcome] = field(default_factory=list)
    manifest_key: str = ""

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def image_key(label: Label, res: DeidResult) -> str:
    return f"images/{label.folder}/{res.study_uid}_{res.sop_uid}.dcm"


NOT_FOR_TRAINING = "an AI key image (derived, burned-in result banner): never a training input"


def _is_display_object(data: bytes) -> bool:
    try:
        header = dcmread(BytesIO(data), stop_before_pixels=True, force=True)
    except (InvalidDicomError, ValueError, EOFError, OSError):
        return False  # unreadable: the de-identifier quarantines it
    return is_ai_display_object(header)


def export_study(
    deid: CheckedDeidentifier,
    source: ObjectStore,
    target: ObjectStore,
    result: StudyResult,
    instances: list[Instance],
    label: Label,
    previous: dict[int, DeidExport],
) -> StudyExport:
    """De-identify and upload every instance; slow work, outside any transaction."""
    export = StudyExport()
    for inst in instances:
        data = source.get_bytes(inst.object_key)  # StorageError: the job is retried
        old = previous.get(inst.id or -1)
        old_key = old.object_key if old is not None else ""
        if _is_display_object(data):
            export.outcomes.append(ExportOutcome(inst, "skipped", NOT_FOR_TRAINING))
            continue
        try:
            res = deid.deidentify_bytes(data)
        except (UnparseableInput, BurnedInText) as exc:
            if old_key:
                target.delete(old_key)  # an earlier export may not stay
            status = "quarantined" if isinstance(exc, UnparseableInput) else "skipped"
            if isinstance(exc, TextHeld):
                source.put_bytes(held_thumbnail_key(inst.sha256), exc.thumbnail)
                status = HELD
            export.outcomes.append(ExportOutcome(inst, status, str(exc)[:500]))
            continue
        key = image_key(label, res)
        stored = target.put_bytes(key, res.data)
        if old_key and old_key != key:
            target.delete(old_key)  # the label changed: the file moved folders
        export.outcomes.append(ExportOutcome(inst, "exported", result=res, stored=stored))
    exported = [o for o in export.outcomes if o.status == "exported"]
    if exported:
        assert exported[0].result is not None
        export.manifest_key = f"manifests/{exported[0].result.study_uid}.jsonl"
        lines = [json.dumps(manifest_line(o, result, label), sort_keys=True) for o in exported]
        target.put_bytes(export.manifest_key, ("\n".join(lines) + "\n").encode())
    return export


def manifest_line(outcome: ExportOutcome, result: StudyResult, label: Label) -> dict[str, object]:
    res, stored = outcome.result, outcome.stored
    assert res is not None and stored is not None
    return {
        "pseudo_patient_id": res.patient_id,
        "pseudo_study_uid": res.study_uid,
        "pseudo_series_uid": res.series_uid,
        "pseudo_sop_uid": res.sop_uid,
        "object_key": stored.key,
        "sha256": stored.sha256,
        "size": stored.size,
        "model_version": result.model_version,
        "score": result.score,
        "category": result.category,
        "label_source": label.source,
        "label": label.value,
        "method_codes": list(res.codes),
        "pixels_cleaned": res.pixels_cleaned,
        "pixel_phi": res.pixel.manifest() if isinstance(res, CheckedResult) else None,
        "exported_at": utcnow().isoformat(),
    }


def export_row(
    outcome: ExportOutcome,
    result: StudyResult,
    label: Label,
    manifest_key: str,
    row: DeidExport | None,
) -> DeidExport:
    """The index row of one instance's outcome (new, or the previous row updated)."""
    inst = outcome.instance
    assert inst.id is not None and result.id is not None
    row = row or DeidExport(
        instance_pk=inst.id,
        study_pk=inst.study_pk,
        study_result_id=result.id,
        status=outcome.status,
        model_version=result.model_version,
        category=result.category,
    )
    row.study_result_id = result.id
    row.status = outcome.status
    row.reason = outcome.reason
    row.model_version = result.model_version
    row.score = result.score
    row.category = result.category
    row.label_source = label.source
    row.label = label.value
    row.updated_at = utcnow()
    res, stored = outcome.result, outcome.stored
    if res is None or stored is None:
        row.object_key = row.manifest_key = ""
    else:
        row.pseudo_patient_id = res.patient_id
        row.pseudo_study_uid = res.study_uid
        row.pseudo_series_uid = res.series_uid
        row.pseudo_sop_uid = res.sop_uid
        row.object_key = stored.key
        row.manifest_key = manifest_key
        row.size = stored.size
        row.sha256 = stored.sha256
        row.method_codes = list(res.codes)
        row.pixels_cleaned = res.pixels_cleaned
        row.exported_at = utcnow()
    return row
