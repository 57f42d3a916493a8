"""The infer job on SQLite and PostgreSQL: results, downstream jobs, failures, shadow mode, and
the out-of-distribution gate (the real RG1 chest CR is outside the demo model's synthetic
training distribution: it is recorded indeterminate, without a score)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from sqlmodel import col, select

from tests.inference.conftest import Pipeline
from tests.synthetic_cr import synthetic_cr
from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.models import (
    InstanceResult,
    Job,
    JobState,
    ModelState,
    ModelVersion,
    StudyResult,
)
from xraygate.core.models.results import set_state
from xraygate.core.queue import RetryPolicy
from xraygate.core.worker import Worker
from xraygate.inference import runtime
from xraygate.inference.registry import DEMO_DIR, import_model
from xraygate.inference.worker import make_handlers

pytestmark = pytest.mark.integration


def sample(name: str) -> Path:
    return Path(get_testdata_file(name))


def synthetic(tmp_path: Path, seed: int = 11, **kwargs: str) -> Path:
    """A synthetic chest CR the demo model can read (in distribution)."""
    from xraygate.inference.training.synthetic import dataset

    images, _ = dataset(1, seed)
    return synthetic_cr(tmp_path / f"synthetic-{seed}.dcm", images[0], **kwargs)


def run_all(pipeline: Pipeline, worker: Worker, limit: int = 50) -> None:
    for _ in range(limit):
        if not worker.run_once():
            return


def worker_for(pipeline: Pipeline) -> Worker:
    handlers = make_handlers(pipeline.settings, pipeline.store, pipeline.queue)
    return Worker(pipeline.queue, handlers, worker_id="test-worker")


def rows(pipeline: Pipeline, model: type) -> list:  # type: ignore[type-arg]
    with db.read_session(pipeline.queue.engine) as session:
        return list(session.scalars(select(model)))


def test_scores_a_chest_cr_and_enqueues_delivery(pipeline: Pipeline, tmp_path: Path) -> None:
    chest = pipeline.ingest(synthetic(tmp_path))
    real = pipeline.ingest(sample("RG1_UNCR.dcm"))
    extremity = pipeline.ingest(sample("RG3_UNCR.dcm"))
    ct = pipeline.ingest(sample("CT_small.dcm"))
    run_all(pipeline, worker_for(pipeline))
    [version] = rows(pipeline, ModelVersion)
    assert version.state == ModelState.ACTIVE and version.manifest["demo"] is True
    assert version.origin == "bundled"
    results = {r.study_instance_uid: r for r in rows(pipeline, StudyResult)}
    scored = results[chest]
    assert scored.score is not None and 0 <= scored.score <= 1
    assert scored.category in ("high", "indeterminate", "low") and scored.revision == 1
    assert scored.model_version == version.label and scored.demo_model
    assert scored.ood_distance is not None and scored.ood_distance <= 1.0 and not scored.reason
    # the real chest CR is unlike the synthetic training images: no score, never low
    rg1 = results[real]
    assert rg1.category == "indeterminate" and rg1.score is None
    assert rg1.ood_distance is not None and rg1.ood_distance > 1.0
    assert rg1.reason == f"out-of-distribution: 1 of 1 image(s), distance {rg1.ood_distance:.2f}"
    assert results[extremity].category == "not-applicable"
    assert results[extremity].reason == "body part EXTREMITY is not chest"
    assert results[ct].category == "not-applicable" and results[ct].score is None
    by_study = {r.study_instance_uid: r for r in rows(pipeline, InstanceResult)}
    instance_result = by_study[chest]
    assert instance_result.input_sha256 and instance_result.model_sha256 == version.sha256
    assert set(instance_result.timings) == {"preprocess_ms", "model_ms", "batch", "saliency_ms"}
    refused = by_study[real]
    assert refused.applicable and refused.score is None
    assert refused.reason.startswith("out-of-distribution (distance ")
    jobs = rows(pipeline, Job)
    downstream = sorted((j.kind, j.study_uid) for j in jobs if j.kind != "infer")
    kinds = ("emit-fhir", "emit-hl7", "emit-pacs", "deidentify")
    assert downstream == sorted([(k, s) for k in kinds for s in (chest, real)])
    assert all(j.state == JobState.DONE for j in jobs if j.kind == "infer")
    payload = next(j.payload for j in jobs if j.kind == "emit-fhir" and j.study_uid == chest)
    assert payload == {
        "study_result_id": scored.id,
        "model_version": scored.model_version,
        "revision": 1,
    }


def test_rerun_does_not_duplicate_and_lossless_variant_agrees(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    study = pipeline.ingest(sample("RG1_UNCR.dcm"))
    worker = worker_for(pipeline)
    run_all(pipeline, worker)
    [first] = rows(pipeline, StudyResult)
    # the JPEG 2000 lossless copy of the same image, as a second instance of the same study
    ds = dcmread(sample("RG1_J2KR.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.501.1"
    copy = tmp_path / "j2kr.dcm"
    ds.save_as(copy)
    pipeline.ingest(copy)
    run_all(pipeline, worker)
    [second] = rows(pipeline, StudyResult)
    distances = [r.ood_distance for r in rows(pipeline, InstanceResult)]
    assert len(distances) == 2 and abs(distances[0] - distances[1]) < 1e-3
    assert second.study_instance_uid == study and second.revision == 2
    assert len(second.instance_uids) == 2
    assert second.score is None and first.score is None  # both out of distribution
    assert abs(second.ood_distance - first.ood_distance) < 1e-3
    assert second.reason.startswith("out-of-distribution: 2 of 2 image(s)")
    emits = [j for j in rows(pipeline, Job) if j.kind == "emit-fhir"]
    assert sorted(j.payload["revision"] for j in emits) == [1, 2]


def test_corrupt_pixels_fail_with_reason_and_retry_while_worker_goes_on(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.queue.policy = RetryPolicy(max_attempts=2, backoff_seconds=0, backoff_max_seconds=0)
    ds = dcmread(sample("RG1_J2KR.dcm"))
    data = bytearray(ds.PixelData)
    data[200:] = bytes(len(data) - 200)
    ds.PixelData = bytes(data)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.501.2"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.501.3"
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    pipeline.ingest(broken)
    good = pipeline.ingest(sample("RG1_UNCR.dcm"))
    run_all(pipeline, worker_for(pipeline))
    jobs = {j.instance_uid: j for j in rows(pipeline, Job) if j.kind == "infer"}
    failed = jobs["1.2.826.0.1.3680043.8.501.2"]
    assert failed.state == JobState.DEAD and failed.attempts == 2
    assert "PixelDataError: pixel data cannot be decoded" in (failed.last_error or "")
    assert [r.study_instance_uid for r in rows(pipeline, StudyResult)] == [good]


def test_model_crash_is_recorded_and_retried(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.ingest(sample("RG1_UNCR.dcm"))
    worker = worker_for(pipeline)

    def crash(self: runtime.LoadedModel, batch: object) -> object:
        raise RuntimeError("CUDA_ERROR_ILLEGAL_ADDRESS")

    with monkeypatch.context() as patch:
        patch.setattr(runtime.LoadedModel, "read", crash)
        assert worker.run_once()
    [job] = rows(pipeline, Job)
    assert job.state == JobState.PENDING and job.attempts == 1
    assert "CUDA_ERROR_ILLEGAL_ADDRESS" in (job.last_error or "")
    assert rows(pipeline, StudyResult) == []
    with db.write_session(pipeline.queue.engine) as session:  # retry now, not after backoff
        session.get(Job, job.id).available_at = job.created_at  # type: ignore[union-attr]
    run_all(pipeline, worker)
    assert rows(pipeline, StudyResult)[0].revision == 1


def test_shadow_version_is_scored_but_never_emitted(pipeline: Pipeline, tmp_path: Path) -> None:
    import json

    worker = worker_for(pipeline)  # registers the bundled demo model as active
    shadow_dir = tmp_path / "shadow"
    shutil.copytree(DEMO_DIR, shadow_dir)
    manifest = json.loads((shadow_dir / "manifest.json").read_text())
    manifest["version"] = "2.0.0-candidate"
    manifest["thresholds"] = {"high": 0.5, "low": 0.3}
    (shadow_dir / "manifest.json").write_text(json.dumps(manifest))
    candidate = import_model(pipeline.queue.engine, pipeline.store, shadow_dir)
    with db.write_session(pipeline.queue.engine) as session:
        set_state(session, candidate.name, candidate.version, ModelState.SHADOW)
    study = pipeline.ingest(synthetic(tmp_path))
    run_all(pipeline, worker)
    results = {r.model_version: r for r in rows(pipeline, StudyResult)}
    shadow = results[candidate.label]
    assert shadow.shadow and shadow.study_instance_uid == study
    assert not [j for j in rows(pipeline, Job) if candidate.label in j.dedupe_key]
    assert len([j for j in rows(pipeline, Job) if j.kind == "emit-hl7"]) == 1
    from xraygate.inference.evaluation import compare_results

    active = next(label for label in results if label != candidate.label)
    report = compare_results(pipeline.queue.engine, candidate.label, active)
    assert report["studies_compared"] == 1 and report["mean_abs_score_difference"] == 0.0


def test_no_active_model_fails_the_job_not_the_worker(pipeline: Pipeline) -> None:
    worker = worker_for(pipeline)
    with db.write_session(pipeline.queue.engine) as session:
        for version in session.scalars(select(ModelVersion)):
            version.state = ModelState.RETIRED
            session.add(version)
    pipeline.ingest(sample("RG1_UNCR.dcm"))
    assert worker.run_once()
    [job] = rows(pipeline, Job)
    assert "no active model version" in (job.last_error or "")
    with db.read_session(pipeline.queue.engine) as session:
        assert session.scalars(select(col(Job.state))).one() == JobState.PENDING


def test_queued_images_are_predicted_in_one_batch(pipeline: Pipeline, tmp_path: Path) -> None:
    ds = dcmread(synthetic(tmp_path))
    for i in range(3):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = (
            f"1.2.826.0.1.3680043.8.504.{i}"
        )
        path = tmp_path / f"copy{i}.dcm"
        ds.save_as(path)
        pipeline.ingest(path)
    worker = worker_for(pipeline)
    assert worker.run_once()
    assert all(j.state == JobState.DONE for j in rows(pipeline, Job) if j.kind == "infer")
    results = rows(pipeline, InstanceResult)
    assert [r.timings["batch"] for r in results] == [3.0, 3.0, 3.0]
    assert len({round(r.score, 6) for r in results}) == 1
    [study] = rows(pipeline, StudyResult)
    assert len(study.instance_uids) == 3


def test_reports_wait_for_a_quiet_study(settings: Settings, tmp_path: Path) -> None:
    """XRAYGATE_STUDY_STABLE_SECONDS: the emit jobs become available only after the wait."""
    pipeline = Pipeline(settings.model_copy(update={"study_stable_seconds": 10.0}), tmp_path)
    chest = pipeline.ingest(synthetic(tmp_path))
    run_all(pipeline, worker_for(pipeline))
    emits = [j for j in rows(pipeline, Job) if j.kind in ("emit-fhir", "emit-hl7")]
    assert len(emits) == 2 and {j.study_uid for j in emits} == {chest}
    for job in emits:
        assert job.state == JobState.PENDING
        waited = (job.available_at - job.created_at).total_seconds()
        assert 9.9 <= waited <= 10.1, waited
