"""Inference results and the model registry's index (written by ``inference/``).

Stable contract read by ``fhir/``, ``hl7/``, ``anonymizer/`` and ``gateway/``: fields are never
renamed or removed; new ones are added nullable.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint, select
from sqlmodel import Field, Session, SQLModel, col

from xraygate.core.config import ModelPolicy
from xraygate.core.models.base import utcnow

OOD_LIMIT = 1.0  # OOD distances are in units of the version's threshold: above it, no score
OOD_REASON = "out-of-distribution"


def ood_reason(distance: float) -> str:
    return f"{OOD_REASON} (distance {distance:.2f}, threshold {OOD_LIMIT:.2f})"


class Category(StrEnum):
    HIGH = "high"  # escalate to staff
    INDETERMINATE = "indeterminate"
    LOW = "low"
    NOT_APPLICABLE = "not-applicable"  # no image the model may read


class ModelState(StrEnum):
    CANDIDATE = "candidate"  # imported, not used
    SHADOW = "shadow"  # scored and stored, never emitted
    ACTIVE = "active"  # exactly one: its results are emitted
    RETIRED = "retired"


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_name_version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    version: str = Field(max_length=50)
    sha256: str = Field(max_length=64, description="sha256 of the model artifact")
    object_key: str = Field(max_length=400, description="artifact key in the object store")
    manifest: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default=ModelState.CANDIDATE, max_length=16)
    auroc: float | None = None
    origin: str = Field(
        default="", max_length=500, description="where it came from: bundled, import, pull URL"
    )
    imported_at: datetime = Field(default_factory=utcnow)
    activated_at: datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"


class InstanceResult(SQLModel, table=True):
    """One image read (or refused) by one model version."""

    __tablename__ = "instance_results"
    __table_args__ = (
        UniqueConstraint("sop_instance_uid", "model_version", name="uq_instance_result"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance_pk: int = Field(foreign_key="instances.id", index=True)
    sop_instance_uid: str = Field(max_length=64)
    study_instance_uid: str = Field(max_length=64, index=True)
    model_version: str = Field(max_length=160, description="name:version")
    model_sha256: str = Field(max_length=64)
    input_sha256: str = Field(max_length=64, description="sha256 of the DICOM object read")
    applicable: bool
    reason: str = Field(default="", max_length=500, description="why not applicable / not scored")
    score: float | None = Field(default=None, description="pneumonia probability in [0, 1]")
    ood_distance: float | None = Field(
        default=None, description="out-of-distribution distance; above OOD_LIMIT: no score"
    )
    shadow: bool = False
    timings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    saliency_key: str | None = Field(
        default=None, max_length=400, description="object key of the saliency map PNG, if any"
    )
    created_at: datetime = Field(default_factory=utcnow)


class StudyResult(SQLModel, table=True):
    """A study's triage by one model version, derived from its instance results."""

    __tablename__ = "study_results"
    __table_args__ = (
        UniqueConstraint("study_instance_uid", "model_version", name="uq_study_result"),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_pk: int = Field(foreign_key="studies.id", index=True)
    study_instance_uid: str = Field(max_length=64)
    model_version: str = Field(max_length=160, description="name:version")
    model_sha256: str = Field(max_length=64)
    score: float | None = Field(default=None, description="study score in [0, 1]")
    category: str = Field(max_length=16, index=True)
    reason: str = Field(default="", max_length=500)
    ood_distance: float | None = Field(
        default=None, description="largest out-of-distribution distance of the images read"
    )
    thresholds: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False), description="high/low"
    )
    instance_uids: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False), description="images read"
    )
    shadow: bool = False
    revision: int = Field(default=1, description="bumped when new images change the result")
    demo_model: bool = Field(default=True, description="result of a demonstration model")
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


# --- result revisions (emitters never store or send a superseded one) -------------------------


def revision_now(session: Session, result_id: int) -> int | None:
    """The result's revision inside the caller's transaction, row-locked until it commits (so a
    new revision cannot slip in before what was built from this one is stored)."""
    revision = session.scalar(
        select(col(StudyResult.revision)).where(col(StudyResult.id) == result_id).with_for_update()
    )
    return None if revision is None else int(revision)


# --- registry queries and state transitions (shared by inference, the CLI and the gateway) ---


def emitting_version(session: Session, policy: ModelPolicy) -> ModelVersion | None:
    """The version whose results are emitted under ``model_policy``: the active one, or with
    ``best-auroc`` the not-retired version with the best validated AUROC."""
    if policy == "best-auroc":
        query = (
            select(ModelVersion)
            .where(col(ModelVersion.state) != ModelState.RETIRED)
            .where(col(ModelVersion.auroc).is_not(None))
            .order_by(col(ModelVersion.auroc).desc(), col(ModelVersion.id).desc())
        )
    else:
        query = select(ModelVersion).where(col(ModelVersion.state) == ModelState.ACTIVE)
    return session.scalars(query).first()


def find_version(session: Session, name: str, version: str) -> ModelVersion:
    from xraygate.core.errors import ModelRegistryError

    row = session.scalars(
        select(ModelVersion).where(
            col(ModelVersion.name) == name, col(ModelVersion.version) == version
        )
    ).first()
    if row is None:
        raise ModelRegistryError(f"no model version {name}:{version}")
    return row


def set_state(session: Session, name: str, version: str, state: ModelState) -> ModelVersion:
    """Move a version to ``state``; activating one retires the previously active one."""
    row = find_version(session, name, version)
    if state == ModelState.ACTIVE:
        for other in session.scalars(
            select(ModelVersion).where(col(ModelVersion.state) == ModelState.ACTIVE)
        ):
            if other.id != row.id:
                other.state = ModelState.RETIRED
                session.add(other)
        row.activated_at = utcnow()
    row.state = state
    session.add(row)
    session.flush()
    return row


def rollback(session: Session) -> ModelVersion:
    """Re-activate the version that was active before the current one."""
    from xraygate.core.errors import ModelRegistryError

    history = list(
        session.scalars(
            select(ModelVersion)
            .where(col(ModelVersion.activated_at).is_not(None))
            .order_by(col(ModelVersion.activated_at).desc())
        )
    )
    if len(history) < 2:
        raise ModelRegistryError("no earlier active version to roll back to")
    previous = history[1]
    return set_state(session, previous.name, previous.version, ModelState.ACTIVE)
