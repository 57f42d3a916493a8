"""Study completeness (XRAYGATE_STUDY_STABLE_SECONDS) with an injected clock: an emit job is
deferred (its attempt not counted) while the study still receives or scores images, and runs once
the study has been quiet long enough; later images make a revised, flagged version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import col

from tests.fhir.conftest import make_env
from tests.results_factory import Made, add_late_image, enqueue_emit, make_result, rescore
from xraygate.core.config import Settings
from xraygate.core.db import read_session, write_session
from xraygate.core.jobs import InferPayload
from xraygate.core.models import Instance, Job, JobState, utcnow
from xraygate.core.study_stability import seconds_until_stable
from xraygate.core.vocabulary import LATE_IMAGES_NOTE
from xraygate.core.worker import Worker
from xraygate.fhir.worker import EmitFhir

T0 = datetime.now(UTC) - timedelta(hours=1)  # the images of the test's study arrived


def received_at(settings_engine: object, made: Made, when: datetime) -> None:
    with write_session(settings_engine) as s:  # type: ignore[arg-type]
        s.execute(
            update(Instance)
            .where(col(Instance.sop_instance_uid).in_(made.instance_uids))
            .values(received_at=when)
        )


def test_seconds_until_stable(settings: Settings) -> None:
    env = make_env(settings)
    engine = env.queue.engine
    made = make_result(engine)
    received_at(engine, made, T0)
    with read_session(engine) as s:
        assert seconds_until_stable(s, made.study_uid, 10, T0 + timedelta(seconds=3)) == 7
        assert seconds_until_stable(s, made.study_uid, 10, T0 + timedelta(seconds=10)) == 0
        assert seconds_until_stable(s, made.study_uid, 0, T0) == 0, "0: today's behaviour"
        assert seconds_until_stable(s, "1.2.3.unknown", 10, T0) == 0
    with write_session(engine) as s:  # an image of the study still waiting for inference
        env.queue.put(s, InferPayload("1.2.3.9", "f" * 64), study_uid=made.study_uid)
    with read_session(engine) as s:
        assert seconds_until_stable(s, made.study_uid, 10, T0 + timedelta(hours=1)) == 10


def test_emit_is_deferred_until_the_study_is_quiet(sqlite_settings: Settings) -> None:
    env = make_env(sqlite_settings, study_stable_seconds=10.0)
    engine = env.queue.engine
    made = make_result(engine, n_instances=2)  # PA + lateral
    received_at(engine, made, T0)
    now = [T0 + timedelta(seconds=4)]
    handlers = {**env.handlers, "emit-fhir": EmitFhir(env.settings, env.queue, lambda: now[0])}
    worker = Worker(env.queue, handlers, worker_id="w")
    enqueue_emit(engine, env.queue, "emit-fhir", made)

    assert worker.run_once()
    [job] = env.jobs("emit-fhir")
    assert job.state == JobState.PENDING and job.attempts == 0, "deferred, not failed"
    wait = (job.available_at - utcnow()).total_seconds()
    assert 5.0 < wait <= 6.0, wait
    assert "still receiving images" in (job.last_error or "")
    assert env.current("DiagnosticReport") == []
    assert not worker.run_once(), "not claimable before its time"

    # the clock moves past the quiet period; the job is made due (no sleeping)
    now[0] = T0 + timedelta(seconds=11)
    with write_session(engine) as s:
        s.execute(update(Job).where(col(Job.id) == job.id).values(available_at=utcnow()))
    assert worker.run_once()
    [job] = env.jobs("emit-fhir")
    assert job.state == JobState.DONE and job.attempts == 1
    [report] = env.current("DiagnosticReport")
    assert LATE_IMAGES_NOTE not in report["conclusion"], "both images came before the report"

    # a third image after the report: a new revision, reported and flagged as revised
    add_late_image(engine, made)
    rescore(engine, made.result_id, score=0.95, category="high")
    now[0] = utcnow() + timedelta(seconds=12)
    enqueue_emit(engine, env.queue, "emit-fhir", made)
    assert worker.run_once()
    [report] = env.current("DiagnosticReport")
    assert report["meta"]["versionId"] == "2" and report["status"] == "preliminary"
    assert LATE_IMAGES_NOTE in report["conclusion"]
