"""Read models of the worklist and the study page, derived from the index, results, jobs and the
delivery outbox.

A study's status:

- ``failed``: one of its jobs or outbox messages is dead-lettered (needs a person);
- ``delivered``: it has an emitted result, every delivery job (``emit-*``) is done and every
  channel that is switched on delivered it (never when no channel is on: see
  :mod:`xraygate.core.delivery_state`, which also gives each row its per-channel states);
- ``scored``: it has an emitted (non-shadow) result;
- ``received``: it is in the index, not scored yet.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlmodel import Session, col

from xraygate.core import delivery_state
from xraygate.core.config import Settings
from xraygate.core.delivery_state import DeliveryState
from xraygate.core.jobs import EMIT_KINDS
from xraygate.core.models import (
    Category,
    Feedback,
    Instance,
    InstanceResult,
    Job,
    JobState,
    OutboxMessage,
    OutboxState,
    Patient,
    Series,
    Study,
    StudyResult,
)

_RISK_RANK = {
    Category.HIGH: 0,
    Category.INDETERMINATE: 1,
    Category.LOW: 2,
    Category.NOT_APPLICABLE: 3,
}


class StudyStatus(StrEnum):
    RECEIVED = "received"
    SCORED = "scored"
    DELIVERED = "delivered"
    FAILED = "failed"


class WorklistRow(BaseModel):
    study_uid: str
    patient_name: str
    patient_id: str
    accession: str
    study_date: str
    description: str
    received_at: datetime
    score: float | None
    category: str | None
    model_version: str | None
    demo_model: bool
    status: StudyStatus
    delivery: dict[str, DeliveryState] = {}


class InstanceView(BaseModel):
    sop_instance_uid: str
    series_uid: str
    modality: str
    body_part: str
    instance_number: int | None
    score: float | None = None
    applicable: bool | None = None
    reason: str = ""
    saliency: bool = False  # a saliency map is stored: GET .../instances/{sop}/saliency


class DeliveryView(BaseModel):
    channel: str
    label: str
    state: str
    attempts: int
    last_error: str | None


class FeedbackView(BaseModel):
    finding: str
    agreement: str
    author: str
    comment: str
    model_version: str
    created_at: datetime


class StudyView(BaseModel):
    row: WorklistRow
    thresholds: dict[str, float]
    reason: str
    revision: int | None
    instances: list[InstanceView]
    jobs: dict[str, str]
    deliveries: list[DeliveryView]
    feedback: list[FeedbackView]


@dataclass
class _Progress:
    dead: bool = False
    emit_total: int = 0
    emit_open: int = 0
    outbox_open: int = 0
    jobs: dict[str, str] = field(default_factory=dict)


def _emitted_results(session: Session, study_uids: list[str]) -> dict[str, StudyResult]:
    rows = session.scalars(
        select(StudyResult)
        .where(col(StudyResult.study_instance_uid).in_(study_uids))
        .where(col(StudyResult.shadow).is_(False))
        .order_by(col(StudyResult.updated_at), col(StudyResult.id))
    )
    return {r.study_instance_uid: r for r in rows}  # the newest wins


def _progress(session: Session, study_uids: list[str]) -> dict[str, _Progress]:
    out: dict[str, _Progress] = defaultdict(_Progress)
    jobs = session.execute(
        select(col(Job.study_uid), col(Job.kind), col(Job.state)).where(
            col(Job.study_uid).in_(study_uids)
        )
    ).all()
    for uid, kind, state in jobs:
        p = out[uid]
        p.dead |= state == JobState.DEAD
        if kind in EMIT_KINDS:
            p.emit_total += 1
            p.emit_open += state != JobState.DONE
        p.jobs[kind] = _worst(p.jobs.get(kind), state)
    messages = session.execute(
        select(col(OutboxMessage.study_uid), col(OutboxMessage.state)).where(
            col(OutboxMessage.study_uid).in_(study_uids)
        )
    ).all()
    for uid, state in messages:
        out[uid].dead |= state == OutboxState.DEAD
        out[uid].outbox_open += state == OutboxState.PENDING
    return out


def _worst(current: str | None, state: str) -> str:
    order = [JobState.DONE, JobState.PENDING, JobState.RUNNING, JobState.DEAD]
    if current is None:
        return state
    return max(current, state, key=lambda s: order.index(JobState(s)))


def _status(
    result: StudyResult | None, progress: _Progress, delivery: dict[str, DeliveryState]
) -> StudyStatus:
    if progress.dead or delivery_state.overall(delivery) == DeliveryState.FAILED:
        return StudyStatus.FAILED
    if result is None:
        return StudyStatus.RECEIVED
    done = progress.emit_total and not progress.emit_open and not progress.outbox_open
    if done and delivery_state.overall(delivery) == DeliveryState.DELIVERED:
        return StudyStatus.DELIVERED
    return StudyStatus.SCORED


def _row(
    study: Study,
    patient: Patient,
    result: StudyResult | None,
    progress: _Progress,
    delivery: dict[str, DeliveryState],
) -> WorklistRow:
    return WorklistRow(
        study_uid=study.study_instance_uid,
        patient_name=patient.name.replace("^", " ").strip(),
        patient_id=patient.patient_id,
        accession=study.accession_number,
        study_date=study.study_date,
        description=study.description,
        received_at=study.created_at,
        score=result.score if result else None,
        category=result.category if result else None,
        model_version=result.model_version if result else None,
        demo_model=result.demo_model if result else False,
        status=_status(result, progress, delivery),
        delivery=delivery,
    )


def risk_key(row: WorklistRow) -> tuple[int, float, float]:
    """Highest risk first: category, then score, then the newest."""
    rank = _RISK_RANK.get(Category(row.category), 4) if row.category else 4
    score = row.score if row.score is not None else -1.0
    return (rank, -score, -row.received_at.timestamp())


@dataclass(frozen=True)
class WorklistQuery:
    """Search and filters of the worklist: ``text`` matches patient name, patient ID or
    accession (case-insensitive, part of the value); dates are DICOM ``YYYYMMDD`` (inclusive)."""

    text: str = ""
    date_from: str = ""
    date_to: str = ""
    status: StudyStatus | None = None
    page: int = 1
    per_page: int = 50


@dataclass
class WorklistPage:
    rows: list[WorklistRow]
    total: int
    page: int
    pages: int


def worklist(
    session: Session,
    settings: Settings,
    *,
    limit: int = 200,
    status: StudyStatus | None = None,
) -> list[WorklistRow]:
    """The newest ``limit`` studies, sorted by risk."""
    return _rows(session, settings, WorklistQuery(status=status), limit)


def worklist_page(
    session: Session, settings: Settings, query: WorklistQuery, *, scan: int = 2000
) -> WorklistPage:
    """One page of the matching studies (of the newest ``scan``), highest risk first."""
    rows = _rows(session, settings, query, scan)
    per_page = max(1, query.per_page)
    pages = max(1, -(-len(rows) // per_page))
    page = min(max(1, query.page), pages)
    start = (page - 1) * per_page
    return WorklistPage(rows[start : start + per_page], len(rows), page, pages)


def _rows(
    session: Session, settings: Settings, query: WorklistQuery, limit: int
) -> list[WorklistRow]:
    stmt = select(Study, Patient).join(Patient, col(Patient.id) == col(Study.patient_pk))
    if text := query.text.strip():
        like = f"%{text.lower()}%"
        stmt = stmt.where(
            func.lower(col(Patient.name)).like(like)
            | func.lower(col(Patient.patient_id)).like(like)
            | func.lower(col(Study.accession_number)).like(like)
        )
    if query.date_from:
        stmt = stmt.where(col(Study.study_date) >= query.date_from)
    if query.date_to:
        stmt = stmt.where(col(Study.study_date) <= query.date_to)
    pairs = session.execute(
        stmt.order_by(col(Study.created_at).desc(), col(Study.id).desc()).limit(limit)
    ).all()
    uids = [study.study_instance_uid for study, _ in pairs]
    results = _emitted_results(session, uids)
    progress = _progress(session, uids)
    delivery = delivery_state.load(session, settings, uids)
    rows = [
        _row(study, patient, results.get(uid), progress[uid], delivery[uid])
        for (study, patient), uid in zip(pairs, uids, strict=True)
    ]
    if query.status is not None:
        rows = [r for r in rows if r.status == query.status]
    return sorted(rows, key=risk_key)


def new_high_risk(session: Session, since: datetime) -> int:
    """Emitted high-risk study results written after ``since`` (the worklist's badge)."""
    count = session.execute(
        select(func.count())
        .select_from(StudyResult)
        .where(col(StudyResult.shadow).is_(False))
        .where(col(StudyResult.category) == Category.HIGH)
        .where(col(StudyResult.updated_at) > since)
    ).scalar()
    return int(count or 0)


def study_view(session: Session, settings: Settings, study_uid: str) -> StudyView | None:
    pair = session.execute(
        select(Study, Patient)
        .join(Patient, col(Patient.id) == col(Study.patient_pk))
        .where(col(Study.study_instance_uid) == study_uid)
    ).first()
    if pair is None:
        return None
    study, patient = pair
    result = _emitted_results(session, [study_uid]).get(study_uid)
    progress = _progress(session, [study_uid])[study_uid]
    delivery = delivery_state.load(session, settings, [study_uid])[study_uid]
    return StudyView(
        row=_row(study, patient, result, progress, delivery),
        thresholds={k: float(v) for k, v in (result.thresholds if result else {}).items()},
        reason=result.reason if result else "",
        revision=result.revision if result else None,
        instances=_instances(session, study, result),
        jobs=dict(sorted(progress.jobs.items())),
        deliveries=_deliveries(session, study_uid),
        feedback=_feedback(session, study),
    )


def _instances(session: Session, study: Study, result: StudyResult | None) -> list[InstanceView]:
    rows = session.execute(
        select(Instance, Series)
        .join(Series, col(Series.id) == col(Instance.series_pk))
        .where(col(Instance.study_pk) == study.id)
        .order_by(col(Series.series_number), col(Instance.instance_number), col(Instance.id))
    ).all()
    scores: dict[str, InstanceResult] = {}
    if result is not None:
        for ir in session.scalars(
            select(InstanceResult).where(
                col(InstanceResult.study_instance_uid) == study.study_instance_uid,
                col(InstanceResult.model_version) == result.model_version,
            )
        ):
            scores[ir.sop_instance_uid] = ir
    views = []
    for instance, series in rows:
        found = scores.get(instance.sop_instance_uid)
        views.append(
            InstanceView(
                sop_instance_uid=instance.sop_instance_uid,
                series_uid=series.series_instance_uid,
                modality=series.modality,
                body_part=series.body_part,
                instance_number=instance.instance_number,
                score=found.score if found else None,
                applicable=found.applicable if found else None,
                reason=found.reason if found else "",
                saliency=bool(found and found.saliency_key),
            )
        )
    return views


def _deliveries(session: Session, study_uid: str) -> list[DeliveryView]:
    rows = session.scalars(
        select(OutboxMessage)
        .where(col(OutboxMessage.study_uid) == study_uid)
        .order_by(col(OutboxMessage.id))
    )
    return [
        DeliveryView(
            channel=r.channel,
            label=delivery_state.label(r.channel),
            state=r.state,
            attempts=r.attempts,
            last_error=r.last_error,
        )
        for r in rows
    ]


def feedback_rows(session: Session, study: Study) -> list[Feedback]:
    """The study's findings, newest first."""
    rows = session.scalars(
        select(Feedback)
        .where(col(Feedback.study_pk) == study.id)
        .order_by(col(Feedback.created_at).desc(), col(Feedback.id).desc())
    )
    return list(rows)


def _feedback(session: Session, study: Study) -> list[FeedbackView]:
    return [
        FeedbackView(
            finding=r.finding,
            agreement=r.agreement,
            author=r.author,
            comment=r.comment,
            model_version=r.model_version,
            created_at=r.created_at,
        )
        for r in feedback_rows(session, study)
    ]


def instance_object_key(session: Session, study_uid: str, sop_uid: str) -> str | None:
    row = session.execute(
        select(col(Instance.object_key))
        .join(Study, col(Study.id) == col(Instance.study_pk))
        .where(col(Study.study_instance_uid) == study_uid)
        .where(col(Instance.sop_instance_uid) == sop_uid)
    ).first()
    return None if row is None else str(row[0])
