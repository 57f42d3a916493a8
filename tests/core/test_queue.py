"""The durable work queue on SQLite and on the local PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from tests.manual_clock import ManualClock
from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.errors import LeaseLost, QueueError
from xraygate.core.models import Job, JobState
from xraygate.core.queue import JobQueue, RetryPolicy
from xraygate.core.worker import Worker

# Every queue here runs on a ManualClock: backoff, availability and leases move only when a test
# advances the clock, so no assertion depends on how fast a loaded machine runs (issue 12: a
# 0.05 s backoff once let a failed job join the next batch).


def make_queue(
    settings: Settings, *, lease: float = 30.0, clock: ManualClock | None = None
) -> JobQueue:
    engine = db.get_engine(settings.resolved_database_url)
    policy = RetryPolicy(max_attempts=3, backoff_seconds=5.0, backoff_max_seconds=60.0)
    return JobQueue(engine, lease_seconds=lease, policy=policy, clock=clock or ManualClock())


def add(queue: JobQueue, kind: str, key: str, priority: int = 0) -> bool:
    with db.write_session(queue.engine) as session:
        return queue.enqueue(session, kind, key, study_uid="1.2.3", priority=priority)


def test_enqueue_is_idempotent_per_kind_and_key(settings: Settings) -> None:
    queue = make_queue(settings)
    assert add(queue, "infer", "a") is True
    assert add(queue, "infer", "a") is False
    assert add(queue, "emit-fhir", "a") is True
    assert queue.counts()[JobState.PENDING] == 2


def test_enqueue_rolls_back_with_its_transaction(settings: Settings) -> None:
    queue = make_queue(settings)
    with pytest.raises(RuntimeError), db.write_session(queue.engine) as session:
        queue.enqueue(session, "infer", "lost")
        raise RuntimeError("the index row failed")
    assert queue.counts()[JobState.PENDING] == 0


def test_claim_takes_highest_priority_then_oldest(settings: Settings) -> None:
    queue = make_queue(settings)
    add(queue, "infer", "low-1")
    add(queue, "infer", "high", priority=10)
    add(queue, "infer", "low-2")
    order = []
    while (job := queue.claim("w1")) is not None:
        order.append(job.dedupe_key)
        with db.write_session(queue.engine) as session:
            queue.complete(session, job)
    assert order == ["high", "low-1", "low-2"]
    assert queue.counts()[JobState.DONE] == 3


def test_claim_filters_kinds(settings: Settings) -> None:
    queue = make_queue(settings)
    add(queue, "emit-hl7", "x")
    assert queue.claim("w1", ["infer"]) is None
    job = queue.claim("w1", ["emit-hl7"])
    assert job is not None and job.kind == "emit-hl7" and job.attempts == 1


def test_failure_retries_with_backoff_then_dead_letters(settings: Settings) -> None:
    clock = ManualClock()
    queue = make_queue(settings, clock=clock)
    add(queue, "infer", "bad")
    states = []
    for attempt in range(1, 4):
        job = queue.claim("w1")
        assert job is not None and job.attempts == attempt
        states.append(queue.fail(job, "decoder exploded"))
        assert queue.claim("w1") is None, "a failed job waits out its backoff"
        clock.advance(queue.policy.delay(attempt) - 0.001)
        assert queue.claim("w1") is None, "not a moment before the backoff ends"
        clock.advance(0.001)
    assert states == [JobState.PENDING, JobState.PENDING, JobState.DEAD]
    dead = queue.jobs(state=JobState.DEAD)
    assert len(dead) == 1 and dead[0].last_error == "decoder exploded" and dead[0].attempts == 3
    queue.retry(dead[0].id or 0)
    job = queue.claim("w1")
    assert job is not None and job.attempts == 1
    with pytest.raises(QueueError):
        queue.retry(job.id)


def test_backoff_delays_the_next_attempt(settings: Settings) -> None:
    clock = ManualClock()
    queue = make_queue(settings, clock=clock)
    queue.policy = RetryPolicy(max_attempts=5, backoff_seconds=60, backoff_max_seconds=600)
    add(queue, "infer", "slow")
    job = queue.claim("w1")
    assert job is not None
    queue.fail(job, "try later")
    assert queue.claim("w1") is None
    clock.advance(59)
    assert queue.claim("w1") is None
    clock.advance(1)
    again = queue.claim("w1")
    assert again is not None and again.attempts == 2
    assert queue.policy.delay(1) == 60 and queue.policy.delay(2) == 120
    assert queue.policy.delay(10) == 600


def test_permanent_failure_dead_letters_at_once(settings: Settings) -> None:
    queue = make_queue(settings)
    add(queue, "emit-hl7", "ar")
    job = queue.claim("w1")
    assert job is not None
    assert queue.fail(job, "AR: unknown patient", permanent=True) == JobState.DEAD


def test_expired_lease_is_reclaimed_and_old_owner_loses_it(settings: Settings) -> None:
    clock = ManualClock()
    queue = make_queue(settings, lease=20, clock=clock)
    add(queue, "infer", "k")
    first = queue.claim("worker-that-dies")
    assert first is not None
    clock.advance(19.9)
    assert queue.claim("w2") is None  # lease still valid
    clock.advance(0.2)
    second = queue.claim("w2")
    assert second is not None and second.id == first.id and second.attempts == 2
    with pytest.raises(LeaseLost), db.write_session(queue.engine) as session:
        queue.complete(session, first)
    with db.write_session(queue.engine) as session:
        queue.complete(session, second)
    assert queue.counts()[JobState.DONE] == 1


def test_job_whose_worker_always_dies_ends_dead(settings: Settings) -> None:
    clock = ManualClock()
    queue = make_queue(settings, lease=30, clock=clock)
    add(queue, "infer", "poison")
    with db.write_session(queue.engine) as session:
        session.execute(
            update(Job).values(
                state=JobState.RUNNING.value,
                attempts=3,
                locked_by="gone",
                lease_expires_at=clock() - timedelta(seconds=1),
            )
        )
    assert queue.claim("w1") is None
    [job] = queue.jobs()
    assert job.state == JobState.DEAD and "lease expired" in (job.last_error or "")


def test_worker_commits_results_and_completion_together(settings: Settings) -> None:
    queue = make_queue(settings)
    add(queue, "infer", "one")
    add(queue, "infer", "two")
    calls: list[str] = []

    def handler(job):  # type: ignore[no-untyped-def]
        calls.append(job.dedupe_key)
        if job.dedupe_key == "two":
            raise ValueError("corrupt pixel data")

        def commit(session):  # type: ignore[no-untyped-def]
            queue.enqueue(session, "emit-fhir", f"{job.dedupe_key}:r1")

        return commit

    worker = Worker(queue, {"infer": handler}, worker_id="w1")
    assert worker.run_once() and worker.run_once()
    with db.read_session(queue.engine) as session:
        jobs = {j.dedupe_key: j for j in session.exec(select(Job)).all()}
    assert jobs["one"].state == JobState.DONE
    assert jobs["one:r1"].state == JobState.PENDING and jobs["one:r1"].kind == "emit-fhir"
    assert jobs["two"].state == JobState.PENDING and jobs["two"].attempts == 1
    assert "ValueError: corrupt pixel data" in (jobs["two"].last_error or "")
    assert "two:r1" not in jobs


def test_failed_commit_keeps_nothing(settings: Settings) -> None:
    queue = make_queue(settings)
    add(queue, "infer", "one")

    def handler(job):  # type: ignore[no-untyped-def]
        def commit(session):  # type: ignore[no-untyped-def]
            queue.enqueue(session, "emit-fhir", "partial")
            raise RuntimeError("disk on fire")

        return commit

    Worker(queue, {"infer": handler}, worker_id="w1").run_once()
    with db.read_session(queue.engine) as session:
        keys = session.exec(select(col(Job.dedupe_key))).all()
    assert keys == ["one"]
    assert queue.jobs()[0].state == JobState.PENDING


def test_batch_handler_gets_a_batch_and_each_job_commits_or_fails_alone(
    settings: Settings,
) -> None:
    from xraygate.core.worker import BatchHandler

    queue = make_queue(settings)
    for key in ("a", "b", "c", "d"):
        add(queue, "infer", key)
    seen: list[list[str]] = []

    class Batch(BatchHandler):
        batch_size = 3

        def batch(self, jobs):  # type: ignore[no-untyped-def]
            seen.append([j.dedupe_key for j in jobs])
            out = []
            for job in jobs:
                if job.dedupe_key == "b":
                    out.append(ValueError("bad pixels"))
                else:
                    out.append(lambda s, k=job.dedupe_key: queue.enqueue(s, "emit-fhir", k))
            return out

    worker = Worker(queue, {"infer": Batch()}, worker_id="w1")
    assert worker.run_once() and worker.run_once()
    # The clock has not moved: "b" waits out its backoff however slow the machine is.
    assert not worker.run_once()
    assert seen == [["a", "b", "c"], ["d"]]
    jobs = {(j.kind, j.dedupe_key): j for j in queue.jobs()}
    assert jobs[("infer", "b")].state == JobState.PENDING
    assert "bad pixels" in (jobs[("infer", "b")].last_error or "")
    assert {k for kind, k in jobs if kind == "emit-fhir"} == {"a", "c", "d"}
    assert all(jobs[("infer", k)].state == JobState.DONE for k in ("a", "c", "d"))
