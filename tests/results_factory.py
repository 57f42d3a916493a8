"""Input rows for the delivery tests, created directly through the core models (the SCP and the
inference worker write them in production)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pydicom.uid import generate_uid
from sqlalchemy import Engine, select
from sqlmodel import col

from xraygate.core.db import write_session
from xraygate.core.models import (
    Instance,
    InstanceResult,
    ModelVersion,
    Patient,
    Series,
    Study,
    StudyResult,
    utcnow,
)

CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"


@dataclass
class Made:
    result_id: int
    study_uid: str
    instance_uids: list[str]
    patient_key: str


def make_result(
    engine: Engine,
    *,
    patient_id: str = "MRN123",
    issuer: str = "HOSP",
    name: str = "DOE^JANE",
    accession: str = "ACC-1",
    score: float | None = 0.87,
    category: str = "high",
    model: str = "cxr-demo:1.0.0",
    n_instances: int = 1,
    shadow: bool = False,
    study_date: str = "20240514",
    study_time: str = "083102",
    demo: bool = True,
    lateral: bool = False,
) -> Made:
    """A study with ``n_instances`` frontal images read by ``model`` (instance results included)
    and, with ``lateral``, one more image the model did not apply to (never evidence)."""
    key = f"{issuer}|{patient_id}"
    study_uid = generate_uid()
    uids = [generate_uid() for _ in range(n_instances)]
    lateral_uid = generate_uid() if lateral else None
    with write_session(engine) as s:
        patient = s.scalars(select(Patient).where(col(Patient.patient_key) == key)).first()
        if patient is None:
            patient = Patient(
                patient_key=key,
                patient_id=patient_id,
                issuer=issuer,
                name=name,
                birth_date="19700101",
                sex="F",
            )
            s.add(patient)
            s.flush()
        study = Study(
            study_instance_uid=study_uid,
            patient_pk=patient.id,
            accession_number=accession,
            study_date=study_date,
            study_time=study_time,
            description="CHEST PA",
        )
        s.add(study)
        s.flush()
        series = Series(
            series_instance_uid=generate_uid(),
            study_pk=study.id,
            modality="CR",
            body_part="CHEST",
            series_number=1,
        )
        s.add(series)
        s.flush()
        instances: list[Instance] = []
        for n, uid in enumerate([*uids, *([lateral_uid] if lateral_uid else [])], start=1):
            instances.append(
                Instance(
                    sop_instance_uid=uid,
                    series_pk=series.id,
                    study_pk=study.id,
                    sop_class_uid=CR_IMAGE,
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    instance_number=n,
                    object_key=f"objects/{uid}",
                    size=1,
                    sha256="0" * 64,
                )
            )
        s.add_all(instances)
        s.flush()
        name_, _, version = model.partition(":")
        mv = s.scalars(
            select(ModelVersion).where(
                col(ModelVersion.name) == name_, col(ModelVersion.version) == version
            )
        ).first()
        if mv is None:
            s.add(
                ModelVersion(
                    name=name_,
                    version=version,
                    sha256="a" * 64,
                    object_key="models/x",
                    state="active",
                )
            )
        for inst in instances:
            read = inst.sop_instance_uid != lateral_uid
            s.add(
                InstanceResult(
                    instance_pk=inst.id,
                    sop_instance_uid=inst.sop_instance_uid,
                    study_instance_uid=study_uid,
                    model_version=model,
                    model_sha256="a" * 64,
                    input_sha256="0" * 64,
                    applicable=read and category != "not-applicable",
                    reason="" if read else "lateral view",
                    score=score if read else None,
                    shadow=shadow,
                )
            )
        result = StudyResult(
            study_pk=study.id,
            study_instance_uid=study_uid,
            model_version=model,
            model_sha256="a" * 64,
            score=score,
            category=category,
            reason="" if score is not None else "not a chest image",
            thresholds={"high": 0.8, "low": 0.6},
            instance_uids=sorted(
                [*(uids if score is not None else []), *([lateral_uid] if lateral_uid else [])]
            ),
            shadow=shadow,
            revision=1,
            demo_model=demo,
        )
        s.add(result)
        s.flush()
        assert result.id is not None
        return Made(result.id, study_uid, uids, key)


def add_late_image(engine: Engine, made: Made, after: timedelta = timedelta(seconds=1)) -> str:
    """One more image of the made study, in its first series, received ``after`` from now (after
    the study was reported); its SOP Instance UID."""
    uid = str(generate_uid())
    with write_session(engine) as s:
        known = s.scalars(
            select(Instance).where(col(Instance.sop_instance_uid) == made.instance_uids[0])
        ).one()
        s.add(
            Instance(
                sop_instance_uid=uid,
                series_pk=known.series_pk,
                study_pk=known.study_pk,
                sop_class_uid=known.sop_class_uid,
                transfer_syntax_uid=known.transfer_syntax_uid,
                object_key="objects/late",
                size=1,
                sha256="1" * 64,
                received_at=utcnow() + after,
            )
        )
    return uid


def rescore(engine: Engine, result_id: int, *, score: float, category: str) -> int:
    """New images changed the result: bump the revision like the inference worker does."""
    with write_session(engine) as s:
        row = s.get(StudyResult, result_id)
        assert row is not None
        row.score = score
        row.category = category
        row.revision += 1
        row.updated_at = utcnow()
        s.add(row)
        return row.revision


def emit_payload(made: Made, engine: Engine) -> dict[str, object]:
    with write_session(engine) as s:
        row = s.get(StudyResult, made.result_id)
        assert row is not None
        return {
            "study_result_id": row.id,
            "model_version": row.model_version,
            "revision": row.revision,
        }


def add_finding(engine: Engine, made: Made, finding: str) -> int:
    """A clinician's finding (confirm / reject) on the study's result, stored as the gateway's
    feedback route does (without the jobs it enqueues: the test enqueues what it runs)."""
    from xraygate.core.models import Feedback

    with write_session(engine) as s:
        result = s.get(StudyResult, made.result_id)
        assert result is not None
        row = Feedback(
            study_pk=result.study_pk,
            study_instance_uid=made.study_uid,
            finding=finding,
            label="PNEUMONIA" if finding == "confirm" else "NORMAL",
            agreement="agree",
            study_result_id=result.id,
            model_version=result.model_version,
        )
        s.add(row)
        s.flush()
        assert row.id is not None
        return row.id


def enqueue_emit(
    engine: Engine,
    queue: object,
    kind: str,
    made: Made,
    priority: int = 0,
    feedback_id: int | None = None,
) -> None:
    """Enqueue ``kind`` (emit-fhir / emit-hl7) for the result, as the inference worker does (or,
    with ``feedback_id``, as a clinician's finding does)."""
    from xraygate.core.queue import JobQueue

    assert isinstance(queue, JobQueue)
    payload = emit_payload(made, engine)
    key = f"{made.study_uid}:{payload['model_version']}:{payload['revision']}"
    if feedback_id is not None:
        payload["feedback_id"] = feedback_id
        key = f"{made.study_uid}:feedback:{feedback_id}"
    with write_session(engine) as s:
        queue.enqueue(
            s,
            kind,
            key,
            study_uid=made.study_uid,
            payload=payload,
            priority=priority,
        )


def run_until(
    queue: object,
    handlers: dict[str, object],
    done: object,
    *,
    workers: int = 2,
    timeout: float = 60.0,
) -> None:
    """Run real Worker threads until ``done()`` is true (fails the test on timeout)."""
    import threading
    import time

    from xraygate.core.queue import JobQueue
    from xraygate.core.worker import Worker

    assert isinstance(queue, JobQueue) and callable(done)
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=Worker(queue, handlers).run,  # type: ignore[arg-type]
            args=(stop, 0.02),
            daemon=True,
        )
        for _ in range(workers)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    try:
        while not done():
            assert time.monotonic() < deadline, "workers did not finish in time"
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
