"""De-identification and retraining export (written by ``anonymizer/``), and clinician feedback
(written by the gateway's feedback API and the CLI).

- :class:`Feedback`: a clinician's finding on a study (confirm / reject pneumonia).
- :class:`DeidDecision`: one ``deidentify`` job's verdict on a study result (selected or why not).
- :class:`DeidExport`: the index of exported (or refused) instances, one row per instance, with
  the manifest fields (pseudonymous ids, model version, score, label source, label).
- :class:`DeidQuarantine`: inputs that could not be parsed; their raw object is never exported.

An image whose pixels hold burned-in text in ``hold`` mode gets a ``DeidExport`` row with status
``held`` (nothing in the export store) and a blurred review thumbnail in the main object store
under :func:`held_thumbnail_key`, which the admin page shows.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import JSON, BigInteger, Column, UniqueConstraint, select
from sqlmodel import Field, Session, SQLModel, col

from xraygate.core import metrics
from xraygate.core.jobs import DeidentifyPayload, EmitFhirPayload, EmitHl7Payload
from xraygate.core.models.base import utcnow
from xraygate.core.models.index import Study
from xraygate.core.models.results import Category, StudyResult

if TYPE_CHECKING:
    from xraygate.core.queue import JobQueue


class Finding(StrEnum):
    CONFIRM = "confirm"  # pneumonia present
    REJECT = "reject"  # no pneumonia


class Agreement(StrEnum):
    AGREE = "agree"
    DISAGREE = "disagree"  # the clinician corrected the model
    INDETERMINATE = "indeterminate"  # the model did not commit
    NO_RESULT = "no-result"


class Feedback(SQLModel, table=True):
    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True)
    study_pk: int = Field(foreign_key="studies.id", index=True)
    study_instance_uid: str = Field(max_length=64, index=True)
    finding: str = Field(max_length=16, description="confirm | reject (pneumonia)")
    label: str = Field(max_length=16, description="PNEUMONIA | NORMAL")
    agreement: str = Field(max_length=16, description="with the model's category")
    study_result_id: int | None = Field(default=None, description="result the clinician saw")
    model_version: str = Field(default="", max_length=160)
    author: str = Field(default="", max_length=200, description="who gave the finding")
    comment: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow)


class DeidDecision(SQLModel, table=True):
    __tablename__ = "deid_decisions"

    id: int | None = Field(default=None, primary_key=True)
    study_pk: int = Field(foreign_key="studies.id", index=True)
    study_result_id: int
    model_version: str = Field(max_length=160)
    revision: int
    feedback_id: int | None = None
    selected: bool
    reason: str = Field(max_length=500)
    exported: int = 0
    skipped: int = 0
    quarantined: int = 0
    decided_at: datetime = Field(default_factory=utcnow)


class DeidExport(SQLModel, table=True):
    __tablename__ = "deid_exports"
    __table_args__ = (UniqueConstraint("instance_pk", name="uq_deid_export_instance"),)

    id: int | None = Field(default=None, primary_key=True)
    instance_pk: int = Field(foreign_key="instances.id")
    study_pk: int = Field(foreign_key="studies.id", index=True)
    study_result_id: int
    status: str = Field(max_length=16, description="exported | skipped | held")
    reason: str = Field(default="", max_length=500)
    pseudo_patient_id: str = Field(default="", max_length=64)
    pseudo_study_uid: str = Field(default="", max_length=64, index=True)
    pseudo_series_uid: str = Field(default="", max_length=64)
    pseudo_sop_uid: str = Field(default="", max_length=64)
    object_key: str = Field(default="", max_length=400, description="key in the export store")
    manifest_key: str = Field(default="", max_length=400)
    size: int = Field(default=0, sa_type=BigInteger)
    sha256: str = Field(default="", max_length=64)
    model_version: str = Field(max_length=160)
    score: float | None = None
    category: str = Field(max_length=16)
    label_source: str = Field(default="none", max_length=16, description="clinician|model|none")
    label: str = Field(default="", max_length=16, description="PNEUMONIA | NORMAL | ''")
    method_codes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    pixels_cleaned: bool = False
    exported_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DeidQuarantine(SQLModel, table=True):
    __tablename__ = "deid_quarantine"

    id: int | None = Field(default=None, primary_key=True)
    instance_pk: int | None = Field(default=None, foreign_key="instances.id", index=True)
    object_key: str = Field(default="", max_length=400, description="the raw object (not moved)")
    sha256: str = Field(default="", max_length=64)
    reason: str = Field(max_length=1000)
    source: str = Field(default="worker", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)


LABELS = {Finding.CONFIRM: "PNEUMONIA", Finding.REJECT: "NORMAL"}
HELD = "held"


def held_thumbnail_key(sha256: str) -> str:
    """Main-store key of the review thumbnail of a held image (by the raw object's digest)."""
    return f"deid-held/{sha256}.png"


def agreement_of(finding: Finding, result: StudyResult | None) -> Agreement:
    if result is None or result.category == Category.NOT_APPLICABLE:
        return Agreement.NO_RESULT
    if result.category == Category.INDETERMINATE:
        return Agreement.INDETERMINATE
    positive = result.category == Category.HIGH
    return Agreement.AGREE if positive == (finding == Finding.CONFIRM) else Agreement.DISAGREE


def emitting_result(session: Session, study_uid: str) -> StudyResult | None:
    """The newest non-shadow result of a study (the one clinicians saw)."""
    return session.scalars(
        select(StudyResult)
        .where(col(StudyResult.study_instance_uid) == study_uid, col(StudyResult.shadow).is_(False))
        .order_by(col(StudyResult.updated_at).desc(), col(StudyResult.id).desc())
    ).first()


def latest_feedback(session: Session, study_pk: int) -> Feedback | None:
    return session.scalars(
        select(Feedback)
        .where(col(Feedback.study_pk) == study_pk)
        .order_by(col(Feedback.created_at).desc(), col(Feedback.id).desc())
    ).first()


def record_feedback(
    session: Session,
    queue: JobQueue,
    study_uid: str,
    finding: Finding,
    *,
    author: str = "",
    comment: str = "",
) -> Feedback | None:
    """Store a clinician's finding and enqueue the re-export that carries it into the manifest.

    Returns None when the study is not in the index. Runs in the caller's transaction.
    """
    study = session.scalars(select(Study).where(col(Study.study_instance_uid) == study_uid)).first()
    if study is None or study.id is None:
        return None
    result = emitting_result(session, study_uid)
    agreement = agreement_of(finding, result)
    row = Feedback(
        study_pk=study.id,
        study_instance_uid=study_uid,
        finding=finding.value,
        label=LABELS[finding],
        agreement=agreement.value,
        study_result_id=result.id if result else None,
        model_version=result.model_version if result else "",
        author=author[:200],
        comment=comment[:2000],
    )
    session.add(row)
    session.flush()
    if result is not None:
        assert result.id is not None and row.id is not None
        # the re-export carrying the label, and the re-emission with the new result status
        # (final, corrected: xraygate.core.result_status)
        for kind in (DeidentifyPayload, EmitFhirPayload, EmitHl7Payload):
            payload = kind(result.id, result.model_version, result.revision, row.id)
            queue.put(session, payload, study_uid=study_uid)
    metrics.FEEDBACK.labels(agreement.value).inc()
    return row
