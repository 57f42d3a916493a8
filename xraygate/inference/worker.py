"""The ``infer`` job: read one instance, score it with the emitting and shadow models, store the
results, and enqueue delivery work in the same transaction.

Follow-up jobs (``emit-fhir``, ``emit-hl7``, ``emit-pacs``, ``deidentify``) are enqueued only for
the emitting model's study result, only when that result changed (a new revision), and never for
shadow models. High-risk studies get a higher queue priority; de-identification for retraining a
lower one (it never delays a delivery).

An image beyond the version's out-of-distribution threshold (:mod:`.ood`) keeps no score: it is
recorded with its OOD distance and the reason, and its study cannot be ``low``.

Each image the emitting model scores also gets a saliency map (:mod:`.saliency`, Grad-CAM),
stored in the object store under the key recorded with its instance result
(``XRAYGATE_SALIENCY=false`` turns it off; shadow models never compute one).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset
from sqlalchemy import select
from sqlmodel import Session, col

from xraygate.core import metrics
from xraygate.core.config import Settings
from xraygate.core.db import read_session
from xraygate.core.errors import InferenceError, StorageError
from xraygate.core.jobs import (
    DeidentifyPayload,
    EmitFhirPayload,
    EmitHl7Payload,
    EmitPacsPayload,
    InferPayload,
    JobKind,
    ResultPayload,
)
from xraygate.core.logging import correlation_id
from xraygate.core.models import (
    Category,
    Instance,
    InstanceResult,
    ModelVersion,
    Study,
    StudyResult,
    utcnow,
)
from xraygate.core.models.results import OOD_LIMIT, ood_reason
from xraygate.core.queue import ClaimedJob, JobQueue
from xraygate.core.storage import ObjectStore
from xraygate.core.worker import BatchHandler, Commit, Handler
from xraygate.inference import applicability, saliency, sync
from xraygate.inference.manifest import Manifest, Thresholds, parse_manifest
from xraygate.inference.preprocess import preprocess, read_dataset
from xraygate.inference.registry import (
    ModelCache,
    emitting_version,
    ensure_default_model,
    shadow_versions,
)
from xraygate.inference.runtime import LoadedModel
from xraygate.inference.scoring import aggregate

log = logging.getLogger(__name__)

DOWNSTREAM: tuple[type[ResultPayload], ...] = (
    EmitFhirPayload,
    EmitHl7Payload,
    EmitPacsPayload,
    DeidentifyPayload,
)
HIGH_PRIORITY = 10
EXPORT_PRIORITY = -10  # de-identification for retraining never delays a result's delivery


@dataclass
class Reading:
    """One model version's reading of one instance."""

    version: ModelVersion
    manifest: Manifest
    shadow: bool
    score: float | None = None
    ood_distance: float | None = None
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    saliency_key: str | None = None


@dataclass
class Prepared:
    """One job's instance, read and preprocessed for every model version."""

    instance: Instance
    readings: list[Reading]
    images: dict[int, NDArray[np.float32]] = field(default_factory=dict)  # reading index -> image


class InferHandler(BatchHandler):
    """Scores instances; a batch of queued jobs goes through each model in one call."""

    def __init__(self, settings: Settings, store: ObjectStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.engine = queue.engine
        self.batch_size = max(1, settings.infer_batch_size)
        self.cache = ModelCache(store, settings.data_dir / "model-cache")

    def batch(self, jobs: list[ClaimedJob]) -> list[Commit | BaseException | None]:
        try:
            versions = self._models()
        except Exception as exc:
            return [exc] * len(jobs)
        prepared: list[Prepared | BaseException | None] = []
        for job in jobs:
            try:
                prepared.append(self._prepare(job, versions))
            except Exception as exc:
                prepared.append(exc)
        for index, (version, _, _) in enumerate(versions):
            self._predict(index, version, [p for p in prepared if isinstance(p, Prepared)])
        return [self._to_commit(p) for p in prepared]

    # -- reading --------------------------------------------------------------------------
    def _instance(self, job: ClaimedJob) -> Instance | None:
        work = InferPayload.from_job(job)
        with read_session(self.engine) as session:
            row = session.scalars(
                select(Instance).where(col(Instance.sop_instance_uid) == work.sop_instance_uid)
            ).first()
        if row is None:
            raise InferenceError("the indexed instance does not exist")
        return row if row.sha256 == work.sha256 else None

    def _dataset(self, instance: Instance) -> Dataset:
        data = self.store.get_bytes(instance.object_key)
        if hashlib.sha256(data).hexdigest() != instance.sha256:
            raise StorageError("stored object does not match its recorded sha256")
        return read_dataset(data)

    def _models(self) -> list[tuple[ModelVersion, Manifest, bool]]:
        emitting = emitting_version(self.engine, self.settings.model_policy)
        if emitting is None:
            raise InferenceError("no active model version: activate one with `xraygate model`")
        versions = [(emitting, parse_manifest_row(emitting), False)]
        for version in shadow_versions(self.engine):
            if version.id != emitting.id:
                versions.append((version, parse_manifest_row(version), True))
        for version, _, _ in versions:
            self.cache.get(version)  # load (and verify) before reading any image
        return versions

    def _prepare(
        self, job: ClaimedJob, versions: list[tuple[ModelVersion, Manifest, bool]]
    ) -> Prepared | None:
        instance = self._instance(job)
        if instance is None:
            log.info("job %s: the instance was replaced by newer content; nothing to do", job.id)
            return None
        ds = self._dataset(instance)
        verdict = applicability.check(ds, self.settings)
        prepared = Prepared(instance, [Reading(v, m, shadow) for v, m, shadow in versions])
        by_spec: dict[str, NDArray[np.float32]] = {}
        for index, reading in enumerate(prepared.readings):
            if not verdict.applicable:
                reading.reason = verdict.reason
                continue
            key = reading.manifest.input.model_dump_json()
            start = time.perf_counter()
            if key not in by_spec:
                by_spec[key] = preprocess(ds, reading.manifest.input)
            prepared.images[index] = by_spec[key]
            elapsed = time.perf_counter() - start
            reading.timings["preprocess_ms"] = elapsed * 1e3
            metrics.INFERENCE_SECONDS.labels(stage="preprocess").observe(elapsed)
        return prepared

    def _predict(self, index: int, version: ModelVersion, batch: list[Prepared]) -> None:
        members = [p for p in batch if index in p.images]
        if not members:
            return
        model = self.cache.get(version)
        start = time.perf_counter()
        read = model.read(np.stack([p.images[index] for p in members]))
        per_image = (time.perf_counter() - start) / len(members)
        metrics.INFERENCE_SECONDS.labels(stage="model").observe(per_image)
        distances = read.ood_distances if read.ood_distances is not None else [None] * len(members)
        for prepared, value, distance in zip(members, read.scores, distances, strict=True):
            reading = prepared.readings[index]
            reading.score = float(value)
            reading.timings["model_ms"] = per_image * 1e3
            reading.timings["batch"] = float(len(members))
            if distance is not None:
                reading.ood_distance = round(float(distance), 4)
                if distance > OOD_LIMIT:  # the model does not know this image: no score
                    reading.score = None
                    reading.reason = ood_reason(float(distance))
                    metrics.OUT_OF_DISTRIBUTION.labels(model_version=version.label).inc()
        if self.settings.saliency and not members[0].readings[index].shadow:
            self._saliency(index, model, members)

    def _saliency(self, index: int, model: LoadedModel, members: list[Prepared]) -> None:
        """Saliency maps of the scored images, stored for the study page (never fails a job:
        without one the page shows the image alone)."""
        scored = [p for p in members if p.readings[index].score is not None]
        if not scored:
            return
        start = time.perf_counter()
        try:
            found = model.saliency(np.stack([p.images[index] for p in scored]))
        except InferenceError as exc:
            log.warning("saliency maps not computed: %s", exc)
            return
        per_image = (time.perf_counter() - start) / len(scored)
        metrics.INFERENCE_SECONDS.labels(stage="saliency").observe(per_image)
        for prepared, values in zip(scored, found, strict=True):
            reading = prepared.readings[index]
            key = saliency.object_key(
                prepared.instance.sop_instance_uid, prepared.instance.sha256, reading.version.sha256
            )
            try:
                self.store.put_bytes(key, saliency.to_png(values))
            except StorageError as exc:
                log.warning("saliency map not stored: %s", exc)
                continue
            reading.saliency_key = key
            reading.timings["saliency_ms"] = per_image * 1e3

    def _to_commit(
        self, prepared: Prepared | BaseException | None
    ) -> Commit | BaseException | None:
        if prepared is None or isinstance(prepared, BaseException):
            return prepared
        instance, readings = prepared.instance, prepared.readings
        return lambda session: self._commit(session, instance, readings)

    # -- committing -----------------------------------------------------------------------
    def _commit(self, session: Session, instance: Instance, readings: list[Reading]) -> None:
        study = session.scalars(
            select(Study).where(col(Study.id) == instance.study_pk).with_for_update()
        ).one()  # serialises study recomputation across workers
        for reading in readings:
            self._store_instance_result(session, instance, study, reading)
            result, changed = self._recompute(session, study, reading)
            if changed and not reading.shadow and result.category != Category.NOT_APPLICABLE:
                self._enqueue_downstream(session, result)

    def _store_instance_result(
        self, session: Session, instance: Instance, study: Study, reading: Reading
    ) -> None:
        label = reading.manifest.label
        row = session.scalars(
            select(InstanceResult).where(
                col(InstanceResult.sop_instance_uid) == instance.sop_instance_uid,
                col(InstanceResult.model_version) == label,
            )
        ).first() or InstanceResult(
            instance_pk=instance.id or 0,
            sop_instance_uid=instance.sop_instance_uid,
            study_instance_uid=study.study_instance_uid,
            model_version=label,
            model_sha256=reading.version.sha256,
            input_sha256=instance.sha256,
            applicable=False,
        )
        row.input_sha256 = instance.sha256
        row.applicable = reading.score is not None or reading.ood_distance is not None
        row.score = reading.score
        row.ood_distance = reading.ood_distance
        row.reason = reading.reason[:500]
        row.shadow = reading.shadow
        row.timings = reading.timings
        row.saliency_key = reading.saliency_key
        row.created_at = utcnow()
        session.add(row)
        session.flush()

    def _recompute(
        self, session: Session, study: Study, reading: Reading
    ) -> tuple[StudyResult, bool]:
        label = reading.manifest.label
        results = list(
            session.scalars(
                select(InstanceResult).where(
                    col(InstanceResult.study_instance_uid) == study.study_instance_uid,
                    col(InstanceResult.model_version) == label,
                )
            )
        )
        thresholds: Thresholds = reading.manifest.thresholds
        outcome = aggregate(results, thresholds)
        row = session.scalars(
            select(StudyResult).where(
                col(StudyResult.study_instance_uid) == study.study_instance_uid,
                col(StudyResult.model_version) == label,
            )
        ).first()
        same = row is not None and (row.score, row.category, row.instance_uids) == (
            outcome.score,
            outcome.category.value,
            outcome.instance_uids,
        )
        if row is not None and same:
            return row, False
        if row is None:
            row = StudyResult(
                study_pk=study.id or 0,
                study_instance_uid=study.study_instance_uid,
                model_version=label,
                model_sha256=reading.version.sha256,
                category=outcome.category.value,
                revision=0,
            )
        row.score = outcome.score
        row.category = outcome.category.value
        row.reason = outcome.reason
        row.ood_distance = outcome.ood_distance
        row.instance_uids = outcome.instance_uids
        row.thresholds = thresholds.model_dump()
        row.shadow = reading.shadow
        row.demo_model = reading.manifest.demo
        row.revision += 1
        row.updated_at = utcnow()
        session.add(row)
        session.flush()
        metrics.STUDIES_SCORED.labels(category=row.category).inc()
        log.info(
            "[%s] study %s by %s (rev %d)",
            correlation_id(study.study_instance_uid),
            row.category,
            label,
            row.revision,
        )
        return row, True

    def _enqueue_downstream(self, session: Session, result: StudyResult) -> None:
        priority = HIGH_PRIORITY if result.category == Category.HIGH else 0
        assert result.id is not None
        for payload in DOWNSTREAM:
            # reports wait for a complete study (XRAYGATE_STUDY_STABLE_SECONDS, see
            # core/study_stability.py); the emit handlers defer themselves if images still come
            self.queue.put(
                session,
                payload(result.id, result.model_version, result.revision),
                study_uid=result.study_instance_uid,
                priority=EXPORT_PRIORITY if payload is DeidentifyPayload else priority,
                delay_seconds=max(0.0, self.settings.study_stable_seconds),
            )


def parse_manifest_row(version: ModelVersion) -> Manifest:
    import json

    return parse_manifest(json.dumps(version.manifest))


def make_handlers(settings: Settings, store: ObjectStore, queue: JobQueue) -> dict[str, Handler]:
    ensure_default_model(settings, queue.engine, store)
    if sync.enabled(settings):
        sync.schedule(queue, settings)
    return {
        JobKind.INFER: InferHandler(settings, store, queue),
        JobKind.MODEL_SYNC: sync.ModelSyncHandler(settings, store, queue),
    }
