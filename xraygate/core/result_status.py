"""Which status a study result has, for every channel (FHIR status, HL7 OBR-25/OBX-11).

The words are :data:`xraygate.core.vocabulary.STATUS_TERMS`; this module decides which one
applies, from the clinicians' findings (``feedback``) on the study:

- no finding: ``preliminary`` (AI output, whatever the number of re-scorings);
- a finding (confirm or reject) given on a result: ``final``;
- a later finding that differs from the first: ``corrected`` (the reviewed content changed to
  correct it);
- otherwise, the result re-scored after the first finding (new images, a new model version):
  ``amended``.

With ``XRAYGATE_FEEDBACK_FINALISES=false`` every result stays ``preliminary``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlmodel import Session, col

from xraygate.core.models.deid import Feedback, Finding
from xraygate.core.models.results import StudyResult
from xraygate.core.vocabulary import ResultStatus


@dataclass(frozen=True)
class ResultState:
    status: ResultStatus
    #: The clinician's latest finding (confirm/reject) once it counts, else None.
    finding: Finding | None = None


PRELIMINARY = ResultState(ResultStatus.PRELIMINARY)


def result_state(session: Session, result: StudyResult, finalises: bool = True) -> ResultState:
    if not finalises:
        return PRELIMINARY
    rows = list(
        session.scalars(
            select(Feedback)
            .where(
                col(Feedback.study_pk) == result.study_pk,
                col(Feedback.study_result_id).is_not(None),
            )
            .order_by(col(Feedback.created_at), col(Feedback.id))
        )
    )
    return state_of(result, rows)


def state_of(result: StudyResult, findings: list[Feedback]) -> ResultState:
    """The state from the study's findings, oldest first (pure: the rules above)."""
    if not findings:
        return PRELIMINARY
    first, latest = findings[0], findings[-1]
    finding = Finding(latest.finding)
    if any(f.finding != first.finding for f in findings[1:]):
        return ResultState(ResultStatus.CORRECTED, finding)
    if _naive(result.updated_at) > _naive(first.created_at):
        return ResultState(ResultStatus.AMENDED, finding)
    return ResultState(ResultStatus.FINAL, finding)


def _naive(value: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes, PostgreSQL aware ones: compare them as naive UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
