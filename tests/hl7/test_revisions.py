"""Emitters and result revisions (found by the cluster harness under a burst: every new image of
a study makes a new revision, and each revision's emit job rebuilt, validated and stored the
study again). A job made for a superseded revision emits nothing: the newer revision's job does.
A revision that lands while a job builds its messages voids that job's commit, so a stale
message can never be queued after the current one (and reach the EHR last)."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from tests.fhir.conftest import make_env as make_fhir_env
from tests.hl7.conftest import make_env as make_hl7_env
from tests.mllp_listener import MllpListener
from tests.results_factory import enqueue_emit, make_result, rescore
from xraygate.core.config import Settings
from xraygate.core.db import read_session, write_session
from xraygate.core.models import FhirResource, Job, OutboxMessage
from xraygate.core.queue import ClaimedJob
from xraygate.core.worker import Worker


def _claim(queue: object, kind: str, revision: int) -> ClaimedJob:
    from xraygate.core.queue import JobQueue

    assert isinstance(queue, JobQueue)
    with read_session(queue.engine) as s:
        job = s.scalars(
            select(Job).where(col(Job.kind) == kind, col(Job.dedupe_key).endswith(f":{revision}"))
        ).one()
    claimed = None
    while claimed is None or claimed.id != job.id:  # claim in queue order up to this one
        claimed = queue.claim("test-worker", [kind])
        assert claimed is not None
    return claimed


def _rows(engine: object, channel: str) -> list[OutboxMessage]:
    with read_session(engine) as s:  # type: ignore[arg-type]
        return list(s.scalars(select(OutboxMessage).where(col(OutboxMessage.channel) == channel)))


def test_superseded_revision_sends_nothing_the_current_one_sends_once(settings: Settings) -> None:
    env = make_hl7_env(settings, MllpListener())
    engine = env.queue.engine
    made = make_result(engine, score=0.3, category="low")
    enqueue_emit(engine, env.queue, "emit-hl7", made)  # revision 1
    rescore(engine, made.result_id, score=0.91, category="high")
    enqueue_emit(engine, env.queue, "emit-hl7", made)  # revision 2
    worker = Worker(env.queue, {"emit-hl7": env.handlers["emit-hl7"]})
    old = _claim(env.queue, "emit-hl7", 1)
    assert env.handlers["emit-hl7"](old) is None, "revision 1 is superseded"
    worker.process(old)
    while worker.run_once():
        pass
    [row] = _rows(engine, "hl7")
    assert row.revision == 2 and row.seq == 1


def test_revision_landing_mid_build_voids_the_commit(settings: Settings) -> None:
    env = make_hl7_env(settings, MllpListener())
    engine = env.queue.engine
    made = make_result(engine, score=0.3, category="low")
    enqueue_emit(engine, env.queue, "emit-hl7", made)
    job = _claim(env.queue, "emit-hl7", 1)
    commit = env.handlers["emit-hl7"](job)  # built from revision 1 ...
    assert commit is not None
    rescore(engine, made.result_id, score=0.91, category="high")  # ... revision 2 lands
    enqueue_emit(engine, env.queue, "emit-hl7", made)
    Worker(env.queue, {"emit-hl7": env.handlers["emit-hl7"]}).run_once()  # revision 2 first
    with write_session(engine) as session:
        commit(session)  # the stale build commits last
        env.queue.complete(session, job)
    [row] = _rows(engine, "hl7")
    assert row.revision == 2, "a stale ORU was queued after the current one"


def test_fhir_stale_build_never_becomes_the_current_version(settings: Settings) -> None:
    env = make_fhir_env(settings, fhir_push_url="http://127.0.0.1:9/fhir")
    engine = env.queue.engine
    made = make_result(engine, score=0.3, category="low")
    enqueue_emit(engine, env.queue, "emit-fhir", made)
    job = _claim(env.queue, "emit-fhir", 1)
    commit = env.handlers["emit-fhir"](job)
    assert commit is not None
    rescore(engine, made.result_id, score=0.91, category="high")
    enqueue_emit(engine, env.queue, "emit-fhir", made)
    Worker(env.queue, {"emit-fhir": env.handlers["emit-fhir"]}).run_once()
    with write_session(engine) as session:
        commit(session)
        env.queue.complete(session, job)
    [report] = env.current("DiagnosticReport")
    [observation] = env.current("Observation")
    assert observation["valueQuantity"]["value"] == 91.0, "the stale score became current"
    assert report["meta"]["versionId"] == "1"
    [push] = _rows(engine, "fhir-push")
    assert push.revision == 2
    with read_session(engine) as s:
        assert len(s.scalars(select(FhirResource)).all()) == len(
            s.scalars(select(FhirResource).where(col(FhirResource.is_current).is_(True))).all()
        ), "no version was stored from the stale build"
