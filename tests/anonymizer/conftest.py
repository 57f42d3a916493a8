"""Index rows + real DICOM objects in the main store, as the SCP and inference worker leave them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pydicom import dcmread
from sqlalchemy import Engine
from sqlmodel import Session

from xraygate.core.db import write_session
from xraygate.core.models import Instance, Patient, Series, Study, StudyResult
from xraygate.core.queue import JobQueue
from xraygate.core.storage import ObjectStore
from xraygate.core.worker import Handler, Worker


@dataclass
class Made:
    result_id: int
    study_uid: str
    study_pk: int
    instance_pks: list[int]


def make_study(
    engine: Engine,
    store: ObjectStore,
    files: list[bytes],
    *,
    category: str = "indeterminate",
    score: float | None = 0.7,
    study_uid: str | None = None,
) -> Made:
    """Store ``files`` and index them as one study with one emitting result."""
    first = None
    for data in files:
        try:
            first = dcmread(__import__("io").BytesIO(data))
            break
        except Exception:
            continue
    assert first is not None
    study_uid = study_uid or str(first.StudyInstanceUID)
    with write_session(engine) as s:
        patient = Patient(patient_key=f"{study_uid}|P", patient_id="P", name="X")
        s.add(patient)
        s.flush()
        study = Study(study_instance_uid=study_uid, patient_pk=patient.id)
        s.add(study)
        s.flush()
        series = Series(series_instance_uid=f"{study_uid}.1", study_pk=study.id, modality="CR")
        s.add(series)
        s.flush()
        pks, uids = [], []
        for n, data in enumerate(files):
            uid = f"{study_uid}.1.{n}"
            key = f"objects/{hashlib.sha256(data).hexdigest()}.dcm"
            stored = store.put_bytes(key, data)
            inst = Instance(
                sop_instance_uid=uid,
                series_pk=series.id,
                study_pk=study.id,
                sop_class_uid="1.2.840.10008.5.1.4.1.1.1",
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                object_key=key,
                size=stored.size,
                sha256=stored.sha256,
            )
            s.add(inst)
            s.flush()
            pks.append(inst.id)
            uids.append(uid)
        result = StudyResult(
            study_pk=study.id,
            study_instance_uid=study_uid,
            model_version="cxr-demo:1.0.0",
            model_sha256="a" * 64,
            score=score,
            category=category,
            thresholds={"high": 0.8, "low": 0.6},
            instance_uids=uids,
        )
        s.add(result)
        s.flush()
        assert result.id is not None and study.id is not None
        return Made(result.id, study_uid, study.id, [p for p in pks if p is not None])


def enqueue_deidentify(engine: Engine, queue: JobQueue, made: Made) -> None:
    """As the inference worker does for the emitting result."""
    with write_session(engine) as s:
        row = s.get(StudyResult, made.result_id)
        assert row is not None
        queue.enqueue(
            s,
            "deidentify",
            f"{made.study_uid}:{row.model_version}:{row.revision}",
            study_uid=made.study_uid,
            payload={
                "study_result_id": row.id,
                "model_version": row.model_version,
                "revision": row.revision,
            },
        )


def drain(queue: JobQueue, handlers: dict[str, Handler]) -> int:
    """Run jobs with a real Worker until the queue is empty; returns how many ran."""
    worker = Worker(queue, handlers)
    ran = 0
    while worker.run_once():
        ran += 1
    return ran


def session_of(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)
