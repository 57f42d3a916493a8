"""Job handlers of the FHIR area.

``emit-fhir`` (per study result, enqueued by the inference worker): build the resources, validate
them, store them as new versions, and, when ``XRAYGATE_FHIR_PUSH_URL`` is set, put a transaction
Bundle in the outbox with a ``push-fhir`` job. Storing and pushing are separate jobs so that an
unreachable EHR never holds up the local FHIR API.

``push-fhir``: the outbox drainer with the httpx sender (ordered per patient, retried on 5xx and
timeouts, dead-lettered on other 4xx with the OperationOutcome recorded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from xraygate.core import metrics
from xraygate.core.config import Settings
from xraygate.core.db import read_session
from xraygate.core.jobs import EmitFhirPayload, JobKind, PushFhirPayload
from xraygate.core.logging import correlation_id
from xraygate.core.models import Channel, utcnow
from xraygate.core.models.results import revision_now
from xraygate.core.outbox import NewMessage, OutboxDrainer, add_message
from xraygate.core.queue import ClaimedJob, JobQueue
from xraygate.core.storage import ObjectStore
from xraygate.core.study_stability import require_stable
from xraygate.core.worker import Commit, Handler
from xraygate.fhir.builders import build_all, build_provenance
from xraygate.fhir.context import ResultContext, load_context, stable_id
from xraygate.fhir.identity import IdentitySystems
from xraygate.fhir.push import (
    FHIR_JSON,
    UnidentifiedPatient,
    make_push_sender,
    transaction_bundle,
)
from xraygate.fhir.store import save
from xraygate.fhir.validate import validate_resource

log = logging.getLogger(__name__)


def delivery_queue(settings: Settings, queue: JobQueue) -> JobQueue:
    """The queue as seen by delivery jobs: their own attempt budget."""
    return queue.with_max_attempts(settings.delivery_max_attempts)


class EmitFhir:
    def __init__(
        self, settings: Settings, queue: JobQueue, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.engine = queue.engine
        self.delivery = delivery_queue(settings, queue)
        self.tz = ZoneInfo(settings.local_timezone)
        self.identity = IdentitySystems.from_settings(settings)

    def __call__(self, job: ClaimedJob) -> Commit | None:
        payload = EmitFhirPayload.from_job(job)
        result_id = payload.study_result_id
        with read_session(self.engine) as session:
            if job.study_uid:  # wait for a complete study (a clinician's finding does not)
                stable = 0.0 if payload.feedback_id else self.settings.study_stable_seconds
                require_stable(session, job.study_uid, stable, self.clock())
            ctx = load_context(
                session,
                result_id,
                self.settings.fhir_system_base,
                self.tz,
                self.settings.feedback_finalises,
                self.identity,
            )
        if ctx is None or ctx.result.shadow:
            return None  # shadow results are stored by inference, never emitted
        if payload.revision < ctx.result.revision:
            return None  # a newer revision's job emits the study's current state
        resources = build_all(ctx)
        for resource in resources:
            validate_resource(resource)
        return lambda session: self._commit(session, ctx, resources, job.priority)

    def _commit(
        self, session: Session, ctx: ResultContext, resources: list[dict[str, Any]], priority: int
    ) -> None:
        study_uid = ctx.study.study_instance_uid
        assert ctx.result.id is not None
        if revision_now(session, ctx.result.id) != ctx.result.revision:
            log.info(
                "[%s] result revised while building: left to the newer job",
                correlation_id(study_uid),
            )
            return
        changed = False
        report_version = 1
        for resource in resources:
            version, did_change = save(session, resource, study_uid)
            changed |= did_change
            if resource["resourceType"] == "DiagnosticReport":
                report_version = version
        provenance = build_provenance(ctx, report_version, ctx.result.updated_at)
        validate_resource(provenance)
        changed |= save(session, provenance, study_uid)[1]
        metrics.DELIVERIES.labels(
            channel="fhir-store", outcome="stored" if changed else "unchanged"
        ).inc()
        log.info(
            "[%s] FHIR report version %d (%s)",
            correlation_id(study_uid),
            report_version,
            "stored" if changed else "unchanged",
        )
        if self.settings.fhir_push_url:
            self._enqueue_push(session, ctx, [*resources, provenance], report_version, priority)

    def _enqueue_push(
        self,
        session: Session,
        ctx: ResultContext,
        resources: list[dict[str, Any]],
        report_version: int,
        priority: int,
    ) -> None:
        key = f"{ctx.study.study_instance_uid}:{ctx.result.model_version}:v{report_version}"
        bundle_id = stable_id("Bundle", key)
        try:
            bundle = transaction_bundle(
                bundle_id,
                resources,
                system_base=self.settings.fhir_system_base,
                patient_mode=self.settings.fhir_push_patient_mode,
            )
        except UnidentifiedPatient:
            metrics.DELIVERIES.labels(channel="fhir-push", outcome="unidentified").inc()
            log.warning(
                "[%s] FHIR push skipped: no PatientID to reference the EHR's patient by",
                correlation_id(ctx.study.study_instance_uid),
            )
            return
        add_message(
            session,
            self.delivery,
            PushFhirPayload,
            NewMessage(
                channel=Channel.FHIR_PUSH,
                stream_key=ctx.patient.patient_key,
                dedupe_key=key,
                control_id=bundle_id,
                study_uid=ctx.study.study_instance_uid,
                content_type=FHIR_JSON,
                message=bundle,
                study_result_id=ctx.result.id,
                revision=ctx.result.revision,
                priority=priority,
            ),
        )


def make_handlers(settings: Settings, store: ObjectStore, queue: JobQueue) -> dict[str, Handler]:
    drainer = OutboxDrainer(
        queue.engine,
        {Channel.FHIR_PUSH: make_push_sender(settings)},
        lease_seconds=settings.delivery_stream_lease_seconds,
    )
    return {JobKind.EMIT_FHIR: EmitFhir(settings, queue), JobKind.PUSH_FHIR: drainer}
