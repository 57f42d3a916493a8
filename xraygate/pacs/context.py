"""What one SR is about, read from the index: the result, its patient and study, the images the
model read (never the lateral or any image it refused as not applicable) and the SR that an
earlier revision of the result sent (the predecessor)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from xraygate.core.models import (
    Channel,
    Instance,
    InstanceResult,
    OutboxMessage,
    Patient,
    Series,
    Study,
    StudyResult,
)

#: The end of the outbox dedupe key of an SR message (the key is ``study:model:revision:sr``).
SR_KEY_SUFFIX = ":sr"


@dataclass(frozen=True)
class SourceImage:
    """One image the model read, as the SR references it."""

    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    object_key: str = ""


@dataclass(frozen=True)
class Predecessor:
    """The SR an earlier revision of the same result sent to the PACS."""

    sop_instance_uid: str  # the outbox message's control ID
    revision: int


@dataclass(frozen=True)
class SrContext:
    result: StudyResult
    patient: Patient
    study: Study
    images: tuple[SourceImage, ...]
    predecessor: Predecessor | None


def images_read(session: Session, result: StudyResult) -> tuple[SourceImage, ...]:
    """The images of the result the model read: applicable for its version (scored, or refused
    by the out-of-distribution gate, which still looked at them), in instance order."""
    rows = session.execute(
        select(Instance, Series)
        .join(InstanceResult, col(InstanceResult.instance_pk) == col(Instance.id))
        .join(Series, col(Series.id) == col(Instance.series_pk))
        .where(
            col(InstanceResult.study_instance_uid) == result.study_instance_uid,
            col(InstanceResult.model_version) == result.model_version,
            col(InstanceResult.applicable).is_(True),
            col(Instance.sop_instance_uid).in_(result.instance_uids or [""]),
        )
        .order_by(col(Series.series_number), col(Instance.instance_number), col(Instance.id))
    ).all()
    return tuple(
        SourceImage(
            inst.sop_class_uid, inst.sop_instance_uid, series.series_instance_uid, inst.object_key
        )
        for inst, series in rows
    )


def predecessor(session: Session, result: StudyResult) -> Predecessor | None:
    """The newest SR stored in the outbox for an earlier revision of ``result``."""
    row = session.scalars(
        select(OutboxMessage)
        .where(
            col(OutboxMessage.channel) == Channel.PACS.value,
            col(OutboxMessage.study_result_id) == result.id,
            col(OutboxMessage.revision) < result.revision,
            col(OutboxMessage.dedupe_key).endswith(SR_KEY_SUFFIX),
        )
        .order_by(col(OutboxMessage.revision).desc())
    ).first()
    if row is None:
        return None
    return Predecessor(row.control_id, row.revision)


def load(session: Session, result_id: int) -> SrContext | None:
    """Everything an SR of result ``result_id`` says, or None when the result or its study is
    gone (or it is a shadow result, which is never emitted)."""
    result = session.get(StudyResult, result_id)
    if result is None or result.shadow:
        return None
    study = session.get(Study, result.study_pk)
    patient = session.get(Patient, study.patient_pk) if study else None
    if study is None or patient is None:
        return None
    return SrContext(
        result, patient, study, images_read(session, result), predecessor(session, result)
    )
