"""One received DICOM object -> object store + index rows + ``infer`` job.

The order makes acknowledgement safe: the object is written (fsync, atomic rename) first, then
the index rows and the job commit in one transaction, and only then does the SCP answer 0x0000.
A crash in between leaves at most an unreferenced object and an unacknowledged C-STORE, which the
sender repeats. Object keys carry the content hash, so a different object with the same SOP
Instance UID never overwrites the one the index points to.
"""

from __future__ import annotations

import logging
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col

from xraygate.core import metrics
from xraygate.core.config import Settings
from xraygate.core.db import is_sqlite, read_session, write_session
from xraygate.core.dicom_io import delimiter_near_end, truncation
from xraygate.core.errors import DatabaseError, IngestError, StorageError, StorageFull
from xraygate.core.jobs import InferPayload
from xraygate.core.logging import correlation_id
from xraygate.core.models import Instance, Patient, Series, Study, utcnow
from xraygate.core.queue import JobQueue
from xraygate.core.storage import ObjectStore, file_digest
from xraygate.dicom_scp.status import Status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Received:
    """A dataset spooled to disk by the SCP, with what the C-STORE request said about it."""

    path: Path | None
    calling_aet: str
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class IngestResult:
    status: Status
    duplicate: bool = False
    comment: str = ""


def read_header(path: Path) -> Dataset:
    """Parse the dataset without loading bulk values, and refuse a truncated one."""
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


def _text(ds: Dataset, keyword: str, limit: int = 64) -> str:
    """The element's text; a multi-valued one joined with DICOM's own separator ``\\`` (FHIR
    makes separate identifiers/names of the values, HL7 repetitions), never Python's list
    spelling."""
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)[:limit]
    return str(value)[:limit]


def _issuer_qualifiers(ds: Dataset) -> tuple[str, str]:
    """UniversalEntityID and its type from IssuerOfPatientIDQualifiersSequence, if any."""
    seq = ds.get("IssuerOfPatientIDQualifiersSequence")
    if not seq:
        return "", ""
    item = seq[0]
    return _text(item, "UniversalEntityID"), _text(item, "UniversalEntityIDType", 16).upper()


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def validate(ds: Dataset, received: Received) -> None:
    """The data set must be the SOP instance the C-STORE request announced."""
    if _text(ds, "SOPClassUID") != received.sop_class_uid:
        raise IngestError(Status.DATASET_MISMATCH, "SOP Class UID differs from the request")
    if _text(ds, "SOPInstanceUID") != received.sop_instance_uid:
        raise IngestError(Status.DATASET_MISMATCH, "SOP Instance UID differs from the request")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not _text(ds, keyword):
            raise IngestError(Status.DATASET_MISMATCH, f"{keyword} is missing")


class Ingestor:
    """Stores received objects and indexes them; safe to call from many threads."""

    def __init__(self, settings: Settings, store: ObjectStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.engine: Engine = queue.engine

    def ingest(self, received: Received) -> IngestResult:
        """Store and index one object; never raises: failures become a refusing status."""
        try:
            return self._ingest(received)
        except IngestError as exc:
            return self._refused(Status(exc.status), exc.comment)
        except Exception as exc:  # a bug must not kill the association: refuse, log the type
            where = traceback.extract_tb(exc.__traceback__)[-1]
            # type and place only: exception messages may quote data set values (PHI)
            log.error(
                "C-STORE failed: %s at %s:%s", type(exc).__name__, where.filename, where.lineno
            )
            return self._refused(Status.PROCESSING_FAILURE, "internal error")

    @staticmethod
    def _refused(status: Status, comment: str) -> IngestResult:
        metrics.INSTANCES_REFUSED.labels(status=f"0x{status:04X}").inc()
        log.warning("C-STORE refused with 0x%04X: %s", status, comment)
        return IngestResult(status, comment=comment)

    def _ingest(self, received: Received) -> IngestResult:
        if received.path is None or not received.path.is_file():
            raise IngestError(Status.PROCESSING_FAILURE, "no spooled data set")
        self._check_space()
        ds = read_header(received.path)
        validate(ds, received)
        size, sha = file_digest(received.path)
        study_uid = _text(ds, "StudyInstanceUID")
        cid = correlation_id(study_uid)
        if self._known(received.sop_instance_uid, sha):
            log.info("[%s] duplicate instance acknowledged, nothing new stored", cid)
            return IngestResult(Status.SUCCESS, duplicate=True)
        key = self._object_key(ds, sha)
        try:
            self.store.put_file(key, received.path, move=True, digest=(size, sha))
        except StorageFull as exc:
            raise IngestError(Status.OUT_OF_RESOURCES_STORAGE_FULL, "object store is full") from exc
        except StorageError as exc:
            raise IngestError(Status.OUT_OF_RESOURCES, "object store unavailable") from exc
        try:
            new = self._index(ds, received, key, size, sha)
        except DatabaseError as exc:
            raise IngestError(
                Status.OUT_OF_RESOURCES_DATABASE, "index database unavailable"
            ) from exc
        metrics.INSTANCES_RECEIVED.labels(sop_class=received.sop_class_uid).inc()
        metrics.BYTES_RECEIVED.inc(size)
        log.info("[%s] instance stored (%d bytes)%s", cid, size, "" if new else " (duplicate)")
        return IngestResult(Status.SUCCESS, duplicate=not new)

    def _check_space(self) -> None:
        """Refuse while the store, or the local spool (the only disk with S3), runs low."""
        limit = self.settings.min_free_bytes
        if limit <= 0:
            return
        free = self.store.free_bytes()
        try:
            spool_free = shutil.disk_usage(self.settings.tmp_dir).free
        except OSError:
            spool_free = None
        for value in (free, spool_free):
            if value is not None and value < limit:
                raise IngestError(Status.OUT_OF_RESOURCES_STORAGE_FULL, "not enough free space")

    @staticmethod
    def _object_key(ds: Dataset, sha: str) -> str:
        study, series, sop = (
            _text(ds, k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
        )
        return f"dicom/{study}/{series}/{sop}.{sha[:16]}.dcm"

    def _known(self, sop_uid: str, sha: str) -> bool:
        with read_session(self.engine) as session:
            row = session.execute(
                select(col(Instance.sha256)).where(col(Instance.sop_instance_uid) == sop_uid)
            ).first()
        return row is not None and row[0] == sha

    def _index(self, ds: Dataset, rec: Received, key: str, size: int, sha: str) -> bool:
        """Write patient/study/series/instance and the infer job in one transaction."""
        with write_session(self.engine) as session:
            patient_pk = self._upsert(session, Patient, "patient_key", _patient_values(ds))
            study_pk = self._upsert(
                session,
                Study,
                "study_instance_uid",
                {**_study_values(ds), "patient_pk": patient_pk},
            )
            series_pk = self._upsert(
                session, Series, "series_instance_uid", {**_series_values(ds), "study_pk": study_pk}
            )
            values = {
                "sop_instance_uid": rec.sop_instance_uid,
                "series_pk": series_pk,
                "study_pk": study_pk,
                "sop_class_uid": rec.sop_class_uid,
                "transfer_syntax_uid": str(ds.file_meta.get("TransferSyntaxUID", "")),
                "instance_number": _int(ds, "InstanceNumber"),
                "object_key": key,
                "size": size,
                "sha256": sha,
                "calling_aet": rec.calling_aet[:16],
                "received_at": utcnow(),
            }
            if not self._store_instance(session, values):
                return False
            self.queue.put(
                session,
                InferPayload(rec.sop_instance_uid, sha),
                study_uid=_text(ds, "StudyInstanceUID"),
            )
            return True

    def _insert(self, model: type[SQLModel], unique: str, values: dict[str, Any]) -> Any:
        insert = sqlite.insert if is_sqlite(self.engine) else postgresql.insert
        return insert(model).values(**values).on_conflict_do_nothing(index_elements=[unique])

    def _upsert(
        self, session: Session, model: type[SQLModel], unique: str, values: dict[str, Any]
    ) -> int:
        """The row's primary key, inserting it first if absent (race-free on both databases)."""
        table = model.__table__  # type: ignore[attr-defined]
        stmt = self._insert(model, unique, values).returning(table.c.id)
        row = session.execute(stmt).first()
        if row is None:
            row = session.execute(
                select(table.c.id).where(table.c[unique] == values[unique])
            ).first()
        assert row is not None
        return int(row[0])

    def _store_instance(self, session: Session, values: dict[str, Any]) -> bool:
        """Insert the instance, or repoint it to new content. False when already indexed."""
        stmt = self._insert(Instance, "sop_instance_uid", values).returning(col(Instance.id))
        if session.execute(stmt).first() is not None:
            return True
        current = session.execute(
            select(col(Instance.sha256))
            .where(col(Instance.sop_instance_uid) == values["sop_instance_uid"])
            .with_for_update()
        ).first()
        if current is not None and current[0] == values["sha256"]:
            return False  # the same object arrived twice at once
        instance = session.scalars(
            select(Instance).where(col(Instance.sop_instance_uid) == values["sop_instance_uid"])
        ).one()
        for name, value in values.items():
            setattr(instance, name, value)
        session.add(instance)
        return True


def _patient_values(ds: Dataset) -> dict[str, Any]:
    patient_id = _text(ds, "PatientID")
    issuer = _text(ds, "IssuerOfPatientID")
    key = f"{issuer}|{patient_id}" if patient_id else f"study|{_text(ds, 'StudyInstanceUID')}"
    universal_id, universal_type = _issuer_qualifiers(ds)
    return {
        "patient_key": key[:200],
        "patient_id": patient_id,
        "issuer": issuer,
        "issuer_universal_id": universal_id,
        "issuer_universal_id_type": universal_type,
        "name": _text(ds, "PatientName", 200),
        "birth_date": _text(ds, "PatientBirthDate", 8),
        "sex": _text(ds, "PatientSex", 16),
        "created_at": utcnow(),
    }


def _study_values(ds: Dataset) -> dict[str, Any]:
    now = utcnow()
    return {
        "study_instance_uid": _text(ds, "StudyInstanceUID"),
        "accession_number": _text(ds, "AccessionNumber"),
        "study_date": _text(ds, "StudyDate", 8),
        "study_time": _text(ds, "StudyTime", 16),
        "description": _text(ds, "StudyDescription", 200),
        "referring_physician": _text(ds, "ReferringPhysicianName", 200),
        **order_values(ds),
        "created_at": now,
        "updated_at": now,
    }


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    try:
        items = ds.get(keyword) or []
        return items[0] if len(items) else None
    except (TypeError, ValueError, KeyError, IndexError):
        return None


def order_values(ds: Dataset) -> dict[str, str]:
    """The order the study fulfils: placer order number and requested procedure code, from the
    first RequestAttributesSequence item, else the top-level Imaging Service Request / Requested
    Procedure attributes (HL7 ORC-2/OBR-2 and OBR-4)."""
    request = _first_item(ds, "RequestAttributesSequence")
    sources = [request, ds] if request is not None else [ds]
    placer = next(
        (v for src in sources if (v := _text(src, "PlacerOrderNumberImagingServiceRequest"))), ""
    )
    code = next(
        (
            item
            for src in sources
            if (item := _first_item(src, "RequestedProcedureCodeSequence")) is not None
            and (_text(item, "CodeValue") or _text(item, "LongCodeValue"))
        ),
        None,
    )
    return {
        "placer_order_number": placer.strip(),
        "requested_procedure_code": (
            (_text(code, "CodeValue") or _text(code, "LongCodeValue")).strip() if code else ""
        ),
        "requested_procedure_scheme": _text(code, "CodingSchemeDesignator").strip() if code else "",
        "requested_procedure_meaning": _text(code, "CodeMeaning").strip() if code else "",
    }


def _series_values(ds: Dataset) -> dict[str, Any]:
    return {
        "series_instance_uid": _text(ds, "SeriesInstanceUID"),
        "modality": _text(ds, "Modality", 16),
        "body_part": _text(ds, "BodyPartExamined"),
        "series_number": _int(ds, "SeriesNumber"),
        "description": _text(ds, "SeriesDescription", 200),
    }
