"""The ``deidentify`` job: decide whether a study result goes to the retraining store, export it,
and record the decision, the exported rows and any quarantined input in one transaction.

Payload: ``study_result_id``, ``model_version``, ``revision`` (from the inference worker) and,
for re-exports after clinician feedback, ``feedback_id``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import select
from sqlmodel import Session, col

from xraygate.anonymizer.engine import Deidentifier
from xraygate.anonymizer.export import StudyExport, export_row, export_study
from xraygate.anonymizer.policy import Decision, ExportPolicy, Label, label_for
from xraygate.anonymizer.site import deid_config, export_store
from xraygate.core import metrics
from xraygate.core.config import Settings
from xraygate.core.db import read_session
from xraygate.core.jobs import DeidentifyPayload, JobKind
from xraygate.core.logging import correlation_id
from xraygate.core.models import (
    DeidDecision,
    DeidExport,
    DeidQuarantine,
    Feedback,
    Instance,
    StudyResult,
)
from xraygate.core.models.deid import latest_feedback
from xraygate.core.queue import ClaimedJob, JobQueue
from xraygate.core.storage import ObjectStore
from xraygate.core.worker import Commit, Handler

log = logging.getLogger(__name__)


@dataclass
class _Loaded:
    result: StudyResult
    feedback: Feedback | None
    instances: list[Instance]
    previous: dict[int, DeidExport]


class DeidentifyHandler:
    def __init__(self, settings: Settings, store: ObjectStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.engine = queue.engine
        self.policy = ExportPolicy.from_settings(settings)

    @cached_property
    def deid(self) -> Deidentifier:
        return Deidentifier(deid_config(self.settings))

    @cached_property
    def target(self) -> ObjectStore:
        return export_store(self.settings)

    def __call__(self, job: ClaimedJob) -> Commit | None:
        payload = DeidentifyPayload.from_job(job)
        loaded = self._load(payload.study_result_id)
        if loaded is None:
            log.warning("deidentify job %s: study result is gone", job.id)
            return None
        result = loaded.result
        cid = correlation_id(result.study_instance_uid)
        if payload.feedback_id is None and payload.revision < result.revision:
            decision = Decision(False, f"superseded by revision {result.revision}")
        else:
            decision = self.policy.decide(result, loaded.feedback)
        if not decision.selected:
            log.info("[%s] not exported: %s", cid, decision.reason)
            metrics.DEID_EXPORTS.labels("not-selected").inc()
            return self._commit(payload, loaded, decision, None, Label("none", ""))
        label = label_for(result, loaded.feedback)
        export = export_study(
            self.deid, self.store, self.target, result, loaded.instances, label, loaded.previous
        )
        log.info(
            "[%s] exported %d, skipped %d, quarantined %d",
            cid,
            export.count("exported"),
            export.count("skipped"),
            export.count("quarantined"),
        )
        return self._commit(payload, loaded, decision, export, label)

    def _load(self, result_id: int) -> _Loaded | None:
        with read_session(self.engine) as session:
            result = session.get(StudyResult, result_id)
            if result is None:
                return None
            feedback = latest_feedback(session, result.study_pk)
            query = select(Instance).where(col(Instance.study_pk) == result.study_pk)
            if result.instance_uids:
                query = query.where(col(Instance.sop_instance_uid).in_(result.instance_uids))
            instances = list(session.scalars(query.order_by(col(Instance.id))))
            ids = [i.id for i in instances]
            previous = {
                row.instance_pk: row
                for row in session.scalars(
                    select(DeidExport).where(col(DeidExport.instance_pk).in_(ids))
                )
            }
        return _Loaded(result, feedback, instances, previous)

    def _commit(
        self,
        payload: DeidentifyPayload,
        loaded: _Loaded,
        decision: Decision,
        export: StudyExport | None,
        label: Label,
    ) -> Commit:
        result = loaded.result

        def commit(session: Session) -> None:
            assert result.id is not None
            counts = {"exported": 0, "skipped": 0, "quarantined": 0}
            for outcome in export.outcomes if export else []:
                counts[outcome.status] += 1
                metrics.DEID_EXPORTS.labels(outcome.status).inc()
                inst = outcome.instance
                if outcome.status == "quarantined":
                    _quarantine(session, inst, outcome.reason)
                    continue
                row = session.scalars(
                    select(DeidExport).where(col(DeidExport.instance_pk) == inst.id)
                ).first()
                assert export is not None
                session.add(export_row(outcome, result, label, export.manifest_key, row))
            session.add(
                DeidDecision(
                    study_pk=result.study_pk,
                    study_result_id=result.id,
                    model_version=payload.model_version,
                    revision=payload.revision,
                    feedback_id=payload.feedback_id,
                    selected=decision.selected,
                    reason=decision.reason[:500],
                    exported=counts["exported"],
                    skipped=counts["skipped"],
                    quarantined=counts["quarantined"],
                )
            )

        return commit


def _quarantine(session: Session, inst: Instance, reason: str) -> None:
    exists = session.scalars(
        select(DeidQuarantine).where(
            col(DeidQuarantine.instance_pk) == inst.id, col(DeidQuarantine.sha256) == inst.sha256
        )
    ).first()
    if exists is None:
        session.add(
            DeidQuarantine(
                instance_pk=inst.id,
                object_key=inst.object_key,
                sha256=inst.sha256,
                reason=reason,
                source="worker",
            )
        )


def make_handlers(settings: Settings, store: ObjectStore, queue: JobQueue) -> dict[str, Handler]:
    return {JobKind.DEIDENTIFY: DeidentifyHandler(settings, store, queue)}
