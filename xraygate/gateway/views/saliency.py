"""Where the study page finds an image's saliency map: the one stored with the instance result
of the study's emitted (non-shadow, newest) result's model version."""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlmodel import Session, col

from xraygate.core.models import InstanceResult, StudyResult


def saliency_key(session: Session, study_uid: str, sop_uid: str) -> str | None:
    """The object key of the map, or None when the emitting model stored none."""
    row = session.execute(
        select(col(InstanceResult.saliency_key))
        .join(
            StudyResult,
            and_(
                col(StudyResult.study_instance_uid) == col(InstanceResult.study_instance_uid),
                col(StudyResult.model_version) == col(InstanceResult.model_version),
            ),
        )
        .where(col(StudyResult.study_instance_uid) == study_uid)
        .where(col(StudyResult.shadow).is_(False))
        .where(col(InstanceResult.sop_instance_uid) == sop_uid)
        .order_by(col(StudyResult.updated_at).desc(), col(StudyResult.id).desc())
        .limit(1)
    ).first()
    return None if row is None or row[0] is None else str(row[0])
