"""Job handlers of the PACS channel.

``emit-pacs`` (per study result revision, once the study is stable like for FHIR and HL7:
``XRAYGATE_STUDY_STABLE_SECONDS``): build the DICOM SR (and, with ``pacs_key_image``, the
Secondary Capture key image) once, and put each object in the outbox of the ``pacs`` channel,
ordered per patient, in the same transaction that checks the result was not revised meanwhile
(a superseded revision is never stored: its successor's SR is). A result without an image the
model read (not applicable) gets no SR: there is nothing in the study for it to cite.

``send-pacs``: the outbox drainer with the C-STORE or STOW-RS sender
(:mod:`xraygate.pacs.senders`): ordered, retried with backoff, dead-lettered.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from xraygate.core.config import Settings
from xraygate.core.db import read_session
from xraygate.core.jobs import EmitPacsPayload, JobKind, SendPacsPayload
from xraygate.core.logging import correlation_id
from xraygate.core.models import Channel, StudyResult, utcnow
from xraygate.core.models.results import revision_now
from xraygate.core.outbox import NewMessage, OutboxDrainer, add_message
from xraygate.core.queue import ClaimedJob, JobQueue
from xraygate.core.storage import ObjectStore
from xraygate.core.study_stability import require_stable
from xraygate.core.worker import Commit, Handler
from xraygate.pacs import context, senders
from xraygate.pacs.context import SR_KEY_SUFFIX, SrContext
from xraygate.pacs.sr import build_sr, to_bytes

log = logging.getLogger(__name__)


class EmitPacs:
    def __init__(self, settings: Settings, store: ObjectStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.engine = queue.engine
        self.delivery = queue.with_max_attempts(settings.delivery_max_attempts)

    def __call__(self, job: ClaimedJob) -> Commit | None:
        payload = EmitPacsPayload.from_job(job)
        if not senders.enabled(self.settings):
            return None  # the PACS channel is off
        with read_session(self.engine) as session:
            if job.study_uid:  # wait for a complete study, like FHIR and HL7
                stable = self.settings.study_stable_seconds
                require_stable(session, job.study_uid, stable, utcnow())
            ctx = context.load(session, payload.study_result_id)
        if ctx is None or payload.revision < ctx.result.revision:
            return None  # gone, shadow, or a newer revision's job stores the current state
        if not ctx.images:
            log.info(
                "[%s] no image read (%s): no SR",
                correlation_id(ctx.result.study_instance_uid),
                ctx.result.category,
            )
            return None
        messages = [self._sr_message(ctx, job.priority)]
        if self.settings.pacs_key_image:
            from xraygate.pacs.key_image import key_image_message

            messages.extend(key_image_message(self.settings, self.store, ctx, job.priority))
        return lambda session: self._commit(session, ctx.result, messages)

    def _sr_message(self, ctx: SrContext, priority: int) -> NewMessage:
        sr = build_sr(ctx, institution=self.settings.pacs_institution)
        return message_for(ctx, str(sr.SOPInstanceUID), to_bytes(sr), SR_KEY_SUFFIX, priority)

    def _commit(self, session: Session, result: StudyResult, messages: list[NewMessage]) -> None:
        assert result.id is not None
        if revision_now(session, result.id) != result.revision:
            log.info(
                "[%s] result revised while building", correlation_id(result.study_instance_uid)
            )
            return
        for new in messages:
            added = add_message(session, self.delivery, SendPacsPayload, new)
            log.info(
                "[%s] pacs object %s",
                correlation_id(new.study_uid),
                "queued" if added else "already queued",
            )


def message_for(
    ctx: SrContext, sop_instance_uid: str, part10: bytes, suffix: str, priority: int
) -> NewMessage:
    r = ctx.result
    return NewMessage(
        channel=Channel.PACS,
        stream_key=ctx.patient.patient_key,
        dedupe_key=f"{r.study_instance_uid}:{r.model_version}:{r.revision}{suffix}",
        control_id=sop_instance_uid,
        study_uid=r.study_instance_uid,
        content_type=senders.DICOM_CONTENT_TYPE,
        message=senders.encode(part10),
        study_result_id=r.id,
        revision=r.revision,
        priority=priority,
    )


def make_handlers(settings: Settings, store: ObjectStore, queue: JobQueue) -> dict[str, Handler]:
    return {
        JobKind.EMIT_PACS: EmitPacs(settings, store, queue),
        JobKind.SEND_PACS: OutboxDrainer(
            queue.engine,
            {Channel.PACS: senders.make_sender(settings)},
            lease_seconds=settings.delivery_stream_lease_seconds,
        ),
    }
