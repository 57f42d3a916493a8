"""Clinician feedback on a study: confirm or reject pneumonia.

``POST /api/studies/{study_uid}/feedback`` stores the finding, counts it in
``xraygate_feedback_total`` and enqueues the re-export that carries the clinician's label into
the retraining manifest; ``GET`` lists a study's findings, newest first. The router has no auth
of its own: the gateway includes it behind its auth dependencies. Every call is audited.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlmodel import col

from xraygate.core import db
from xraygate.core.models import Feedback, Study
from xraygate.core.models.deid import Finding, record_feedback
from xraygate.gateway.deps import AUDITED, EngineDep, PrincipalDep, QueueDep, ReadDb
from xraygate.gateway.errors import JsonRoute, NotFound
from xraygate.gateway.views.studies import feedback_rows

router = APIRouter(prefix="/api", tags=["feedback"], dependencies=[AUDITED], route_class=JsonRoute)


class FeedbackIn(BaseModel):
    finding: Finding = Field(description="confirm = pneumonia present, reject = no pneumonia")
    comment: str = Field("", max_length=2000)


class FeedbackOut(BaseModel):
    id: int
    study_instance_uid: str
    finding: str
    label: str
    agreement: str
    model_version: str
    by: str
    comment: str
    created_at: datetime

    @classmethod
    def of(cls, row: Feedback) -> FeedbackOut:
        assert row.id is not None
        return cls(
            id=row.id,
            study_instance_uid=row.study_instance_uid,
            finding=row.finding,
            label=row.label,
            agreement=row.agreement,
            model_version=row.model_version,
            by=row.author,
            comment=row.comment,
            created_at=row.created_at,
        )


@router.post("/studies/{study_uid}/feedback", status_code=201)
def post_feedback(
    study_uid: str,
    body: FeedbackIn,
    engine: EngineDep,
    queue: QueueDep,
    principal: PrincipalDep,
) -> FeedbackOut:
    """Record a clinician's finding; the study's export manifest follows it. The author is the
    authenticated caller (a ``by`` in the body is ignored: nobody files a finding as another)."""
    with db.write_session(engine) as session:
        row = record_feedback(
            session,
            queue,
            study_uid,
            body.finding,
            author=principal.subject[:200],
            comment=body.comment,
        )
    if row is None:
        raise NotFound("unknown study")
    return FeedbackOut.of(row)


@router.get("/studies/{study_uid}/feedback")
def list_feedback(study_uid: str, session: ReadDb) -> list[FeedbackOut]:
    """The study's findings, newest first."""
    study = session.scalars(select(Study).where(col(Study.study_instance_uid) == study_uid)).first()
    if study is None:
        raise NotFound("unknown study")
    return [FeedbackOut.of(r) for r in feedback_rows(session, study)]
