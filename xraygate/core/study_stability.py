"""Study completeness: a study is reported once it has been quiet for
``XRAYGATE_STUDY_STABLE_SECONDS`` (as Orthanc's StableAge, MONAI Deploy's study timeout).

A PA + lateral study otherwise produces a report after its first image and a revised one
seconds later. Inference enqueues the emit jobs with that delay; each emit handler then asks
:func:`seconds_until_stable` and defers itself (:class:`~xraygate.core.errors.NotYet`, the
attempt not counted) while the study is still receiving or scoring images. Images arriving
after the report still make a new revision, reported the same way and flagged as revised
(:data:`xraygate.core.vocabulary.LATE_IMAGES_NOTE`, :func:`images_after`). 0 turns the wait off
(report at once).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlmodel import Session, col

from xraygate.core.errors import NotYet
from xraygate.core.jobs import JobKind
from xraygate.core.models import Instance, Job, JobState, Study


def seconds_until_stable(
    session: Session, study_uid: str, stable_seconds: float, now: datetime
) -> float:
    """0 when the study counts as complete; else how long to wait before asking again."""
    if stable_seconds <= 0:
        return 0.0
    scoring = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(
            col(Job.kind) == JobKind.INFER.value,
            col(Job.study_uid) == study_uid,
            col(Job.state).in_([JobState.PENDING.value, JobState.RUNNING.value]),
        )
    )
    if scoring:
        return stable_seconds  # images still being read: quiet starts after them
    last = last_image_at(session, study_uid)
    if last is None:
        return 0.0
    waited = (_utc(now) - _utc(last)).total_seconds()
    return max(0.0, stable_seconds - waited)


def require_stable(session: Session, study_uid: str, stable_seconds: float, now: datetime) -> None:
    """Raise :class:`NotYet` while the study is not stable."""
    wait = seconds_until_stable(session, study_uid, stable_seconds, now)
    if wait > 0:
        raise NotYet(wait, f"study still receiving images: again in {wait:.1f}s")


def last_image_at(session: Session, study_uid: str) -> datetime | None:
    """When the study's latest image was received."""
    last: datetime | None = session.scalar(
        select(func.max(col(Instance.received_at)))
        .join(Study, col(Study.id) == col(Instance.study_pk))
        .where(col(Study.study_instance_uid) == study_uid)
    )
    return last


def images_after(session: Session, study_uid: str, first_reported: datetime | None) -> bool:
    """Whether images of the study arrived after a channel first reported it."""
    last = last_image_at(session, study_uid)
    if last is None or first_reported is None:
        return False
    return _utc(last) > _utc(first_reported)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
