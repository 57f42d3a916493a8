"""The received object's header: parsed once from the spool, checked, and turned into the
values of its index rows (an :class:`IndexRecord`, what the journal writes and the indexer
commits)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from xraygate.core.dicom_io import delimiter_near_end, truncation
from xraygate.core.errors import IngestError
from xraygate.core.ingest.status import Status
from xraygate.core.models import utcnow


@dataclass(frozen=True)
class Received:
    """A data set a receiver spooled to disk, with what its request said about it.

    ``sha256`` and ``size`` are the spool file's digest when the receiver hashed the bytes
    while writing them (one pass); left None, the ingestor reads the file to hash it.
    """

    path: Path | None
    calling_aet: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str = ""
    sha256: str | None = None
    size: int | None = None


@dataclass
class IndexRecord:
    """The values of one instance's index rows: patient, study, series, instance."""

    patient: dict[str, Any]
    study: dict[str, Any]
    series: dict[str, Any]
    instance: dict[str, Any]
    seq: int = 0

    @property
    def sop_instance_uid(self) -> str:
        return str(self.instance["sop_instance_uid"])

    @property
    def sha256(self) -> str:
        return str(self.instance["sha256"])

    @property
    def study_uid(self) -> str:
        return str(self.study["study_instance_uid"])

    def to_json(self) -> dict[str, Any]:
        instance = {**self.instance, "received_at": self.instance["received_at"].isoformat()}
        return {
            "seq": self.seq,
            "patient": self.patient,
            "study": self.study,
            "series": self.series,
            "instance": instance,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexRecord:
        instance = dict(data["instance"])
        instance["received_at"] = datetime.fromisoformat(instance["received_at"])
        return cls(data["patient"], data["study"], data["series"], instance, int(data["seq"]))


def read_header(path: Path) -> Dataset:
    """Parse the data set once, bulk values deferred (never read), and refuse a truncated one."""
    try:
        ds = dcmread(path, defer_size=4096)
        size = path.stat().st_size
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if syntax is not None and syntax.is_encapsulated and not delimiter_near_end(path, size):
            raise IngestError(Status.CANNOT_UNDERSTAND, "encapsulated pixel data is truncated")
        if truncation(ds, size, partial_header=False, deferred=True):
            raise IngestError(Status.CANNOT_UNDERSTAND, "data set is truncated")
    except IngestError:
        raise
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, TypeError) as exc:
        comment = f"cannot parse data set: {type(exc).__name__}"
        raise IngestError(Status.CANNOT_UNDERSTAND, comment) from exc
    if len(ds) == 0:
        raise IngestError(Status.CANNOT_UNDERSTAND, "the data set is empty")
    return ds


def text(ds: Dataset, keyword: str, limit: int = 64) -> str:
    value = ds.get(keyword, "")
    return str(value if value is not None else "")[:limit]


def integer(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def validate(ds: Dataset, received: Received) -> None:
    """The data set must be the SOP instance the request announced."""
    if text(ds, "SOPClassUID") != received.sop_class_uid:
        raise IngestError(Status.DATASET_MISMATCH, "SOP Class UID differs from the request")
    if text(ds, "SOPInstanceUID") != received.sop_instance_uid:
        raise IngestError(Status.DATASET_MISMATCH, "SOP Instance UID differs from the request")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not text(ds, keyword):
            raise IngestError(Status.DATASET_MISMATCH, f"{keyword} is missing")


def object_key(ds: Dataset, sha: str) -> str:
    """Keys carry the content hash: another object with the same SOP Instance UID never
    overwrites the one the index points to."""
    study, series, sop = (
        text(ds, k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    )
    return f"dicom/{study}/{series}/{sop}.{sha[:16]}.dcm"


def index_record(ds: Dataset, rec: Received, key: str, size: int, sha: str) -> IndexRecord:
    syntax = rec.transfer_syntax_uid or str(ds.file_meta.get("TransferSyntaxUID", ""))
    instance = {
        "sop_instance_uid": rec.sop_instance_uid,
        "sop_class_uid": rec.sop_class_uid,
        "transfer_syntax_uid": syntax[:64],
        "instance_number": integer(ds, "InstanceNumber"),
        "object_key": key,
        "size": size,
        "sha256": sha,
        "calling_aet": rec.calling_aet[:16],
        "received_at": utcnow(),
    }
    return IndexRecord(_patient(ds), _study(ds), _series(ds), instance)


def _patient(ds: Dataset) -> dict[str, Any]:
    patient_id = text(ds, "PatientID")
    issuer = text(ds, "IssuerOfPatientID")
    key = f"{issuer}|{patient_id}" if patient_id else f"study|{text(ds, 'StudyInstanceUID')}"
    return {
        "patient_key": key[:200],
        "patient_id": patient_id,
        "issuer": issuer,
        "name": text(ds, "PatientName", 200),
        "birth_date": text(ds, "PatientBirthDate", 8),
        "sex": text(ds, "PatientSex", 16),
    }


def _study(ds: Dataset) -> dict[str, Any]:
    return {
        "study_instance_uid": text(ds, "StudyInstanceUID"),
        "accession_number": text(ds, "AccessionNumber"),
        "study_date": text(ds, "StudyDate", 8),
        "study_time": text(ds, "StudyTime", 16),
        "description": text(ds, "StudyDescription", 200),
        "referring_physician": text(ds, "ReferringPhysicianName", 200),
    }


def _series(ds: Dataset) -> dict[str, Any]:
    return {
        "series_instance_uid": text(ds, "SeriesInstanceUID"),
        "modality": text(ds, "Modality", 16),
        "body_part": text(ds, "BodyPartExamined"),
        "series_number": integer(ds, "SeriesNumber"),
        "description": text(ds, "SeriesDescription", 200),
    }
