"""The worker loop: claim a job, run its handler, commit results and completion together.

A handler does its slow work (decode, predict, send) outside any transaction and returns a
*commit* function, or None. The loop then opens one transaction that runs the commit function
(store results, enqueue follow-ups) and marks the job done; if anything fails, nothing of it is
kept and the job is retried per the queue's policy.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping

from sqlmodel import Session

from xraygate.core import metrics
from xraygate.core.db import write_session
from xraygate.core.errors import LeaseLost, NotYet, XraygateError
from xraygate.core.logging import correlation_id, scrub
from xraygate.core.models import JobState
from xraygate.core.queue import ClaimedJob, JobQueue

log = logging.getLogger(__name__)

Commit = Callable[[Session], None]
Handler = Callable[[ClaimedJob], Commit | None]


class BatchHandler:
    """A handler that can also work on several jobs of its kind at once (e.g. one model call).

    ``batch`` returns, per job and in order, a Commit, None, or the exception that job raised.
    """

    batch_size: int = 1

    def __call__(self, job: ClaimedJob) -> Commit | None:
        outcome = self.batch([job])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def batch(self, jobs: list[ClaimedJob]) -> list[Commit | BaseException | None]:
        raise NotImplementedError


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs jobs of the kinds it has handlers for."""

    def __init__(
        self, queue: JobQueue, handlers: Mapping[str, Handler], worker_id: str | None = None
    ) -> None:
        self.queue = queue
        self.handlers = dict(handlers)
        self.worker_id = worker_id or new_worker_id()
        self.in_hand: list[ClaimedJob] = []  # claimed and not yet finished

    def run_once(self) -> bool:
        """Claim and run one job (or a batch of its kind). False when none was available."""
        job = self.queue.claim(self.worker_id, self.handlers)
        if job is None:
            return False
        self.in_hand = [job]
        try:
            handler = self.handlers[job.kind]
            if isinstance(handler, BatchHandler) and handler.batch_size > 1:
                more = self.queue.claim_many(self.worker_id, [job.kind], handler.batch_size - 1)
                self.in_hand = [job, *more]
                self.process_batch(handler, [job, *more])
            else:
                self.process(job)
        finally:
            self.in_hand = []
        return True

    def release(self) -> list[ClaimedJob]:
        """Give back the jobs this worker holds (graceful shutdown); returns those released."""
        released = []
        for job in list(self.in_hand):
            try:
                self.queue.release(job)
            except XraygateError:  # finished meanwhile, or the database is unreachable
                continue
            released.append(job)
        return released

    def process(self, job: ClaimedJob) -> None:
        try:
            outcome: Commit | BaseException | None = self.handlers[job.kind](job)
        except Exception as exc:  # a worker must survive any handler failure
            outcome = exc
        self._finish(job, outcome)

    def process_batch(self, handler: BatchHandler, jobs: list[ClaimedJob]) -> None:
        try:
            outcomes = handler.batch(jobs)
        except Exception as exc:
            outcomes = [exc] * len(jobs)
        for job, outcome in zip(jobs, outcomes, strict=True):
            self._finish(job, outcome)

    def _finish(self, job: ClaimedJob, outcome: Commit | BaseException | None) -> None:
        """Commit the job's results and completion in one transaction, or record the failure."""
        if job in self.in_hand:
            self.in_hand = [j for j in self.in_hand if j is not job]
        try:
            if isinstance(outcome, NotYet):
                self.queue.defer(job, outcome.seconds, str(outcome))
                return
            if isinstance(outcome, BaseException):
                raise outcome
            with write_session(self.queue.engine) as session:
                if outcome is not None:
                    outcome(session)
                self.queue.complete(session, job)
        except LeaseLost:
            metrics.JOBS_FINISHED.labels(kind=job.kind, outcome="lease_lost").inc()
            log.warning("job %s lost its lease; another worker owns it", job.id)
        except Exception as exc:  # a worker must survive any handler failure
            self._fail(job, exc)
        else:
            metrics.JOBS_FINISHED.labels(kind=job.kind, outcome="done").inc()

    def _fail(self, job: ClaimedJob, exc: Exception) -> None:
        permanent = isinstance(exc, XraygateError) and exc.permanent
        reason = dead_letter_reason(job, exc)
        try:
            state = self.queue.fail(job, reason, permanent=permanent)
        except LeaseLost:
            metrics.JOBS_FINISHED.labels(kind=job.kind, outcome="lease_lost").inc()
            log.warning("job %s lost its lease while failing", job.id)
            return
        # "retry" (back to pending, after its backoff) or "dead" (dead-lettered)
        metrics.JOBS_FINISHED.labels(
            kind=job.kind, outcome="retry" if state == JobState.PENDING else "dead"
        ).inc()
        log.warning(
            "job %s (%s) attempt %s failed -> %s: %s",
            job.id,
            job.kind,
            job.attempts,
            state.value,
            type(exc).__name__,
        )

    def run(self, stop: threading.Event, poll_seconds: float = 0.2) -> None:
        """Loop until ``stop`` is set, sleeping ``poll_seconds`` when idle."""
        kinds = ", ".join(sorted(str(getattr(k, "value", k)) for k in self.handlers))
        log.info("worker %s started for %s", self.worker_id, kinds)
        while not stop.is_set():
            try:
                busy = self.run_once()
            except XraygateError as exc:
                log.error("worker %s: %s", self.worker_id, exc)
                busy = False
            if not busy:
                stop.wait(poll_seconds)


def dead_letter_reason(job: ClaimedJob, exc: BaseException) -> str:
    """Why a job failed, for the queue row the admin page and ``xraygate outbox`` show: the
    error classes (with their causes), the scrubbed message (no DICOM / SQL / HL7 values) and
    the study's log correlation id, never the values themselves."""
    causes: list[str] = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(causes) < 3:
        causes.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    study = correlation_id(job.study_uid) if job.study_uid else "-"
    message = scrub(str(exc))[:400]
    chain = f" (from {' <- '.join(causes)})" if causes else ""
    return f"{type(exc).__name__}: {message}{chain} [correlation {study}]"
