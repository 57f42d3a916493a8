"""Job handlers of the HL7 area.

``emit-hl7`` (per study result): build the ORU^R01 once, with a control ID derived from the
result (the same on every retry and every re-run), and put it in the outbox of the ``hl7``
channel, ordered per patient; a high-risk result also goes to the escalation targets (a second
MLLP host and/or a webhook). Jobs inherit the result's priority, so high risk is sent first.

``send-hl7`` / ``notify-escalation``: the outbox drainer with the MLLP sender / the webhook
sender. The webhook is plain HTTP: its sender and retry policy are
:mod:`xraygate.core.http_delivery`, shared with the FHIR push; only the notification body (what
staff need to find the study) is built here, where escalation is decided.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session, col

from xraygate.core.config import Settings
from xraygate.core.db import read_session
from xraygate.core.errors import PermanentDelivery
from xraygate.core.http_delivery import make_webhook_sender
from xraygate.core.jobs import (
    EmitHl7Payload,
    JobKind,
    NotifyEscalationPayload,
    OutboxPayload,
    SendHl7Payload,
)
from xraygate.core.logging import correlation_id
from xraygate.core.models import (
    Channel,
    OutboxMessage,
    Patient,
    Study,
    StudyResult,
    utcnow,
)
from xraygate.core.models.results import revision_now
from xraygate.core.outbox import DeliveryOutcome, NewMessage, OutboxDrainer, Sender, add_message
from xraygate.core.queue import ClaimedJob, JobQueue
from xraygate.core.result_status import result_state
from xraygate.core.storage import ObjectStore
from xraygate.core.study_stability import images_after, require_stable
from xraygate.core.vocabulary import HL7_STATUS, STATUS_TERMS, terms_for
from xraygate.core.worker import Commit, Handler
from xraygate.hl7.er7 import codec_of
from xraygate.hl7.mllp import make_mllp_sender
from xraygate.hl7.oru import build_oru

log = logging.getLogger(__name__)

HL7_CONTENT_TYPE = "x-application/hl7-v2+er7"
ESCALATION_BOOST = 5


def control_id(channel: str, result: StudyResult, status: str = HL7_STATUS) -> str:
    """MSH-10 (20 characters at most): unique per channel, result, revision and result status
    (a clinician's finding sends the same revision again as ``F``/``C``), and stable."""
    key = f"{channel}|{result.study_instance_uid}|{result.model_version}|{result.revision}"
    if status != HL7_STATUS:
        key += f"|{status}"
    return "XG" + hashlib.sha256(key.encode()).hexdigest()[:18].upper()


def _late_images(session: Session, study_uid: str) -> bool:
    """Whether images of the study arrived after the first ORU this service made for it (the
    revised result says so in its NTE, as the FHIR report does in its conclusion)."""
    first = session.scalar(
        select(func.min(col(OutboxMessage.created_at))).where(
            col(OutboxMessage.channel) == Channel.HL7,
            col(OutboxMessage.study_uid) == study_uid,
        )
    )
    return images_after(session, study_uid, first)


def _delivery_queue(settings: Settings, queue: JobQueue) -> JobQueue:
    return queue.with_max_attempts(settings.delivery_max_attempts)


class EmitHl7:
    def __init__(self, settings: Settings, queue: JobQueue) -> None:
        self.settings = settings
        self.engine = queue.engine
        self.delivery = _delivery_queue(settings, queue)

    def channels(self, high: bool, status: str = HL7_STATUS) -> list[str]:
        """Where the message goes; the webhook notifies staff once, for the preliminary result
        (a clinician's finding is news to the EHR, not to the escalation pager)."""
        s = self.settings
        out: list[str] = []
        if s.hl7_host and s.hl7_port:
            out.append(Channel.HL7)
        if high and s.escalation_hl7_host and s.escalation_hl7_port:
            out.append(Channel.HL7_ESCALATION)
        if high and s.escalation_webhook_url and status == HL7_STATUS:
            out.append(Channel.WEBHOOK_ESCALATION)
        return out

    def __call__(self, job: ClaimedJob) -> Commit | None:
        payload = EmitHl7Payload.from_job(job)
        result_id = payload.study_result_id
        with read_session(self.engine) as session:
            if job.study_uid:  # wait for a complete study (a clinician's finding does not)
                stable = 0.0 if payload.feedback_id else self.settings.study_stable_seconds
                require_stable(session, job.study_uid, stable, utcnow())
            result = session.get(StudyResult, result_id)
            if result is None or result.shadow:
                return None
            study = session.get(Study, result.study_pk)
            patient = session.get(Patient, study.patient_pk) if study else None
            state = result_state(session, result, self.settings.feedback_finalises)
            late = _late_images(session, result.study_instance_uid)
        status = STATUS_TERMS[state.status].hl7
        if study is None or patient is None:
            raise PermanentDelivery(f"study result {result_id} has no study or patient row")
        if payload.revision < result.revision:
            return None  # a newer revision's job sends the study's current state
        channels = self.channels(terms_for(result.category).urgent, status)
        if not channels:
            return None  # HL7 sending is off
        now = utcnow().astimezone()
        messages = [
            self._message(ch, result, study, patient, now, job.priority, status, late)
            for ch in channels
        ]
        return lambda session: self._commit(session, result, messages)

    def _message(
        self,
        channel: str,
        result: StudyResult,
        study: Study,
        patient: Patient,
        now: datetime,
        priority: int,
        status: str,
        late: bool = False,
    ) -> tuple[type[OutboxPayload], NewMessage]:
        cid = control_id(channel, result, status)
        send: type[OutboxPayload]
        if channel == Channel.WEBHOOK_ESCALATION:
            body = json.dumps(_notification(cid, result, study), separators=(",", ":"))
            send, ctype = NotifyEscalationPayload, "application/json"
        else:
            body = build_oru(
                self.settings, cid, result, study, patient, now, status, late_images=late
            )
            send, ctype = SendHl7Payload, HL7_CONTENT_TYPE
        boost = ESCALATION_BOOST if channel != Channel.HL7 else 0
        return send, NewMessage(
            channel=channel,
            stream_key=patient.patient_key,
            dedupe_key=(
                f"{result.study_instance_uid}:{result.model_version}:{result.revision}:{status}"
            ),
            control_id=cid,
            study_uid=result.study_instance_uid,
            content_type=ctype,
            message=body,
            study_result_id=result.id,
            revision=result.revision,
            priority=priority + boost,
        )

    def _commit(
        self,
        session: Session,
        result: StudyResult,
        messages: list[tuple[type[OutboxPayload], NewMessage]],
    ) -> None:
        assert result.id is not None
        if revision_now(session, result.id) != result.revision:
            # revised while this one was built: the newer revision's job sends it, after this
            # one would have, so a stale ORU can never overtake the current one
            log.info(
                "[%s] result revised while building", correlation_id(result.study_instance_uid)
            )
            return
        for send, new in messages:
            added = add_message(session, self.delivery, send, new)
            log.info(
                "[%s] %s message %s",
                correlation_id(new.study_uid),
                new.channel,
                "queued" if added else "already queued",
            )


def _notification(cid: str, result: StudyResult, study: Study) -> dict[str, object]:
    """The escalation webhook body: no identifier of the patient or the study (not even the
    accession number): ``id`` is the study's correlation id, the key staff look the study up
    by (the logs and the admin dead-letter list carry it)."""
    return {
        "event": "xraygate.high-risk-result",
        "id": cid,
        "category": result.category,
        "riskPercent": None if result.score is None else round(result.score * 100, 1),
        "modelVersion": result.model_version,
        "demoModel": result.demo_model,
        "revision": result.revision,
        "aiGenerated": True,
    }


def _unconfigured(what: str) -> Sender:
    def send(message: OutboxMessage) -> DeliveryOutcome:
        return DeliveryOutcome("retry", f"{what} is not configured")

    return send


def make_handlers(settings: Settings, store: ObjectStore, queue: JobQueue) -> dict[str, Handler]:
    s = settings
    hl7 = (
        make_mllp_sender(s.hl7_host, s.hl7_port, s.hl7_timeout, codec_of(s.hl7_charset))
        if s.hl7_host and s.hl7_port
        else _unconfigured("XRAYGATE_HL7_HOST/PORT")
    )
    escalation = (
        make_mllp_sender(
            s.escalation_hl7_host, s.escalation_hl7_port, s.hl7_timeout, codec_of(s.hl7_charset)
        )
        if s.escalation_hl7_host and s.escalation_hl7_port
        else _unconfigured("XRAYGATE_ESCALATION_HL7_HOST/PORT")
    )
    lease = s.delivery_stream_lease_seconds
    return {
        JobKind.EMIT_HL7: EmitHl7(settings, queue),
        JobKind.SEND_HL7: OutboxDrainer(
            queue.engine,
            {Channel.HL7: hl7, Channel.HL7_ESCALATION: escalation},
            lease_seconds=lease,
        ),
        JobKind.NOTIFY_ESCALATION: OutboxDrainer(
            queue.engine,
            {Channel.WEBHOOK_ESCALATION: make_webhook_sender(s.escalation_webhook_url, 10.0)},
            lease_seconds=lease,
        ),
    }
