"""A durable work queue in the database.

Protocol, in the order a job lives it:

1. :meth:`JobQueue.put` inserts a job inside the caller's transaction, so the job exists if
   and only if the row that caused it (an index row, a result) was committed. ``(kind,
   dedupe_key)`` is unique: enqueueing the same work twice is a no-op. The kinds and their
   payloads are the contract in :mod:`xraygate.core.jobs`.
2. :meth:`JobQueue.claim` hands the most urgent available job to one worker with a lease.
   PostgreSQL picks it with ``FOR UPDATE SKIP LOCKED``; SQLite runs claims through the
   process-wide single-writer lock. A running job whose lease expired (its worker died) is
   claimable again.
3. :meth:`JobQueue.complete` marks it done inside the transaction that stores the job's results
   and enqueues follow-up work; it raises :class:`LeaseLost` if the lease was taken over.
4. :meth:`JobQueue.fail` records the reason and schedules a retry with exponential backoff, or
   dead-letters the job after ``max_attempts`` (or at once for a permanent error).
   :meth:`JobQueue.retry` puts a dead job back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from xraygate.core.config import Settings
from xraygate.core.db import is_sqlite, open_database, read_session, write_session
from xraygate.core.errors import LeaseLost, QueueError
from xraygate.core.jobs import JobPayload
from xraygate.core.models import Job, JobState, utcnow


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 600.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        return float(min(self.backoff_max_seconds, self.backoff_seconds * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    dedupe_key: str
    study_uid: str | None
    instance_uid: str | None
    payload: dict[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    worker_id: str
    lease_expires_at: datetime


class JobQueue:
    """The queue over one database."""

    def __init__(
        self,
        engine: Engine,
        *,
        lease_seconds: float = 300.0,
        policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.lease = timedelta(seconds=lease_seconds)
        self.policy = policy or RetryPolicy()
        # The one source of "now" for leases, backoff and availability; tests inject a manual
        # clock so that no assertion depends on how fast the machine runs.
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = False) -> JobQueue:
        """The queue over the configured database (migrated first with ``migrate``)."""
        policy = RetryPolicy(
            settings.queue_max_attempts,
            settings.queue_backoff_seconds,
            settings.queue_backoff_max_seconds,
        )
        engine = open_database(settings.resolved_database_url, migrate=migrate)
        return cls(engine, lease_seconds=settings.queue_lease_seconds, policy=policy)

    def with_max_attempts(self, max_attempts: int) -> JobQueue:
        """The same queue, enqueueing jobs with another attempt budget (same backoff, lease)."""
        policy = RetryPolicy(
            max_attempts, self.policy.backoff_seconds, self.policy.backoff_max_seconds
        )
        return JobQueue(
            self.engine, lease_seconds=self.lease.total_seconds(), policy=policy, clock=self.clock
        )

    # -- 1. enqueue -----------------------------------------------------------------------
    def put(
        self,
        session: Session,
        job: JobPayload,
        *,
        study_uid: str | None = None,
        priority: int = 0,
        delay_seconds: float = 0.0,
    ) -> bool:
        """Add the job ``job`` describes (kind, dedupe key, payload) in the caller's transaction.

        Returns False if it already existed.
        """
        return self.enqueue(
            session,
            job.kind,
            job.dedupe_key(study_uid),
            study_uid=study_uid,
            instance_uid=job.instance_uid,
            payload=job.to_payload(),
            priority=priority,
            delay_seconds=delay_seconds,
        )

    def enqueue(
        self,
        session: Session,
        kind: str,
        dedupe_key: str,
        *,
        study_uid: str | None = None,
        instance_uid: str | None = None,
        payload: dict[str, Any] | None = None,
        priority: int = 0,
        delay_seconds: float = 0.0,
    ) -> bool:
        """Add a job in the caller's transaction. Returns False if it already existed.

        The untyped form under :meth:`put`, which is what services use.
        """
        now = self.clock()
        values = {
            "kind": kind,
            "dedupe_key": dedupe_key,
            "state": JobState.PENDING.value,
            "study_uid": study_uid,
            "instance_uid": instance_uid,
            "payload": payload or {},
            "priority": priority,
            "attempts": 0,
            "max_attempts": self.policy.max_attempts,
            "available_at": now + timedelta(seconds=delay_seconds),
            "created_at": now,
            "updated_at": now,
        }
        insert = sqlite.insert if is_sqlite(self.engine) else postgresql.insert
        stmt = (
            insert(Job)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["kind", "dedupe_key"])
            .returning(col(Job.id))
        )
        return session.execute(stmt).first() is not None

    def put_many(
        self, conn: Connection | Session, jobs: Sequence[tuple[JobPayload, str | None]]
    ) -> None:
        """Add many jobs (payload, study UID) in the caller's transaction, in one statement;
        those that already exist are left alone."""
        if not jobs:
            return
        now = self.clock()
        values = [
            {
                "kind": job.kind.value,
                "dedupe_key": job.dedupe_key(study_uid),
                "state": JobState.PENDING.value,
                "study_uid": study_uid,
                "instance_uid": job.instance_uid,
                "payload": job.to_payload(),
                "priority": 0,
                "attempts": 0,
                "max_attempts": self.policy.max_attempts,
                "available_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for job, study_uid in jobs
        ]
        insert = sqlite.insert if is_sqlite(self.engine) else postgresql.insert
        stmt = insert(Job).on_conflict_do_nothing(index_elements=["kind", "dedupe_key"])
        conn.execute(stmt, values)

    # -- 2. claim -------------------------------------------------------------------------
    def claim(self, worker_id: str, kinds: Iterable[str] | None = None) -> ClaimedJob | None:
        """Lease the most urgent available job to ``worker_id``, or return None."""
        while True:
            job = self._claim_one(worker_id, list(kinds) if kinds is not None else None)
            if job is None or job.attempts <= job.max_attempts:
                return job
            # A job whose workers keep dying (lease expired every time) ends in the dead letters.
            self._finish_failed(job, "lease expired on every attempt (worker crashed)", dead=True)

    def claim_many(self, worker_id: str, kinds: Iterable[str], limit: int) -> list[ClaimedJob]:
        """Lease up to ``limit`` available jobs (each claim is its own short transaction)."""
        kinds = list(kinds)
        jobs: list[ClaimedJob] = []
        while len(jobs) < limit and (job := self.claim(worker_id, kinds)) is not None:
            jobs.append(job)
        return jobs

    def _claim_one(self, worker_id: str, kinds: list[str] | None) -> ClaimedJob | None:
        now = self.clock()
        available = or_(
            and_(col(Job.state) == JobState.PENDING.value, col(Job.available_at) <= now),
            and_(col(Job.state) == JobState.RUNNING.value, col(Job.lease_expires_at) < now),
        )
        pick = select(col(Job.id)).where(available)
        if kinds is not None:
            pick = pick.where(col(Job.kind).in_(kinds))
        pick = pick.order_by(col(Job.priority).desc(), col(Job.available_at), col(Job.id)).limit(1)
        if not is_sqlite(self.engine):
            pick = pick.with_for_update(skip_locked=True)
        stmt = (
            update(Job)
            .where(col(Job.id) == pick.scalar_subquery())
            .values(
                state=JobState.RUNNING.value,
                locked_by=worker_id,
                lease_expires_at=now + self.lease,
                attempts=col(Job.attempts) + 1,
                updated_at=now,
            )
            .returning(
                col(Job.id),
                col(Job.kind),
                col(Job.dedupe_key),
                col(Job.study_uid),
                col(Job.instance_uid),
                col(Job.payload),
                col(Job.priority),
                col(Job.attempts),
                col(Job.max_attempts),
                col(Job.lease_expires_at),
            )
        )
        with write_session(self.engine) as session:
            row = session.execute(stmt).first()
        if row is None:
            return None
        return ClaimedJob(
            id=row[0],
            kind=row[1],
            dedupe_key=row[2],
            study_uid=row[3],
            instance_uid=row[4],
            payload=dict(row[5] or {}),
            priority=row[6],
            attempts=row[7],
            max_attempts=row[8],
            worker_id=worker_id,
            lease_expires_at=row[9],
        )

    def extend(self, job: ClaimedJob) -> None:
        """Renew the lease of a long-running job."""
        with write_session(self.engine) as session:
            self._owned_update(session, job, lease_expires_at=self.clock() + self.lease)

    # -- 3. complete ------------------------------------------------------------------------
    def complete(self, session: Session, job: ClaimedJob) -> None:
        """Mark done in the caller's transaction (the one that stores the results)."""
        now = self.clock()
        self._owned_update(
            session,
            job,
            state=JobState.DONE.value,
            finished_at=now,
            lease_expires_at=None,
            last_error=None,
        )

    def _owned_update(self, session: Session, job: ClaimedJob, **values: Any) -> None:
        stmt = (
            update(Job)
            .where(
                col(Job.id) == job.id,
                col(Job.locked_by) == job.worker_id,
                col(Job.state) == JobState.RUNNING.value,
                col(Job.attempts) == job.attempts,
            )
            .values(updated_at=self.clock(), **values)
        )
        if not session.execute(stmt).rowcount:  # type: ignore[attr-defined]
            raise LeaseLost(f"job {job.id} is no longer leased to {job.worker_id}")

    def release(self, job: ClaimedJob) -> None:
        """Give a claimed job back unfinished (graceful shutdown): claimable again at once, and
        the attempt is not counted. Raises LeaseLost if the job is no longer ours."""
        with write_session(self.engine) as session:
            self._owned_update(
                session,
                job,
                state=JobState.PENDING.value,
                locked_by=None,
                lease_expires_at=None,
                available_at=self.clock(),
                attempts=job.attempts - 1,
            )

    def defer(self, job: ClaimedJob, seconds: float, note: str = "") -> None:
        """Put a claimed job back to run after ``seconds`` (it was not time yet): its attempt is
        not counted. Raises LeaseLost if the job is no longer ours."""
        with write_session(self.engine) as session:
            self._owned_update(
                session,
                job,
                state=JobState.PENDING.value,
                locked_by=None,
                lease_expires_at=None,
                available_at=self.clock() + timedelta(seconds=max(0.0, seconds)),
                attempts=job.attempts - 1,
                last_error=note[:2000] or None,
            )

    # -- 4. fail / retry --------------------------------------------------------------------
    def fail(self, job: ClaimedJob, error: str, *, permanent: bool = False) -> JobState:
        """Record a failed attempt: retry later, or dead-letter. Returns the new state."""
        dead = permanent or job.attempts >= job.max_attempts
        return self._finish_failed(job, error, dead=dead)

    def _finish_failed(self, job: ClaimedJob, error: str, *, dead: bool) -> JobState:
        now = self.clock()
        state = JobState.DEAD if dead else JobState.PENDING
        values: dict[str, Any] = {
            "state": state.value,
            "last_error": error[:2000],
            "lease_expires_at": None,
            "locked_by": None,
        }
        if dead:
            values["finished_at"] = now
        else:
            values["available_at"] = now + timedelta(seconds=self.policy.delay(job.attempts))
        with write_session(self.engine) as session:
            self._owned_update(session, job, **values)
        return state

    def retry(self, job_id: int) -> None:
        """Put a dead (or done) job back in the queue with a fresh attempt budget."""
        now = self.clock()
        with write_session(self.engine) as session:
            stmt = (
                update(Job)
                .where(col(Job.id) == job_id, col(Job.state).in_([JobState.DEAD, JobState.DONE]))
                .values(
                    state=JobState.PENDING.value,
                    attempts=0,
                    available_at=now,
                    updated_at=now,
                    finished_at=None,
                    locked_by=None,
                )
            )
            if not session.execute(stmt).rowcount:  # type: ignore[attr-defined]
                raise QueueError(f"job {job_id} is not dead or done")

    # -- inspection -------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Jobs by state, every state present (zero when none)."""
        out = {state.value: 0 for state in JobState}
        with read_session(self.engine) as session:
            rows = session.execute(select(col(Job.state), func.count()).group_by(Job.state)).all()
        for state, count in rows:
            out[str(state)] = int(count)
        return out

    def jobs(
        self, *, state: str | None = None, kind: str | None = None, limit: int = 100
    ) -> list[Job]:
        with read_session(self.engine) as session:
            query = select(Job).order_by(col(Job.id).desc()).limit(limit)
            if state:
                query = query.where(col(Job.state) == state)
            if kind:
                query = query.where(col(Job.kind) == kind)
            return list(session.scalars(query).all())
