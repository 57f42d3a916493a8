"""Ordered, at-least-once delivery on top of the work queue.

A producer (``emit-hl7``, ``emit-fhir``) calls :func:`add_message` in its commit transaction: the
message is stored exactly as it will go on the wire, gets the next sequence number of its stream
(channel + patient), and one send job (an :class:`~xraygate.core.jobs.OutboxPayload` kind) is
enqueued for it. The send job runs
:class:`OutboxDrainer`, which

1. takes the stream's lease (a compare-and-set on ``delivery_streams``, so one sender per stream
   across threads, processes and hosts, on SQLite and PostgreSQL alike);
2. sends, in sequence order, every pending message of the stream up to and including its own, so
   a later message never overtakes an earlier undelivered one; it stops at the first failure;
3. marks each accepted message delivered at once (a crash after the peer's ACK resends the same
   bytes, with the same control ID, which the peer can de-duplicate).

A sender answers with a :class:`DeliveryOutcome`: ``delivered``, ``retry`` (timeout, dropped
connection, HL7 AE, HTTP 5xx: the job is retried with backoff) or ``reject`` (HL7 AR, HTTP 4xx: the
message is dead-lettered with the peer's answer recorded; later messages of the stream go on).
Dead messages are replayed with :func:`retry_message` (``xraygate outbox retry``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from xraygate.core import metrics
from xraygate.core.db import is_sqlite, read_session, write_session
from xraygate.core.errors import PermanentDelivery, QueueError, RetryableDelivery
from xraygate.core.jobs import OutboxPayload, outbox_key
from xraygate.core.logging import correlation_id, scrub
from xraygate.core.models import (
    DeliveryStream,
    Job,
    JobState,
    OutboxMessage,
    OutboxState,
    utcnow,
)
from xraygate.core.queue import ClaimedJob, JobQueue
from xraygate.core.worker import Commit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryOutcome:
    """What a sender learnt from the peer."""

    result: Literal["delivered", "retry", "reject"]
    detail: str = ""
    response: str | None = None  # the peer's answer as received (ACK, OperationOutcome)


Sender = Callable[[OutboxMessage], DeliveryOutcome]


@dataclass(frozen=True)
class NewMessage:
    channel: str
    stream_key: str
    dedupe_key: str
    control_id: str
    study_uid: str
    content_type: str
    message: str
    study_result_id: int | None = None
    revision: int = 1
    priority: int = 0


def add_message(
    session: Session, queue: JobQueue, send: type[OutboxPayload], new: NewMessage
) -> int | None:
    """Store ``new`` with the next sequence number of its stream and enqueue its ``send`` job.

    Returns the outbox id, or None if a message with the same dedupe key already exists.
    """
    existing = session.scalars(
        select(col(OutboxMessage.id)).where(
            col(OutboxMessage.channel) == new.channel,
            col(OutboxMessage.dedupe_key) == new.dedupe_key,
        )
    ).first()
    if existing is not None:
        return None
    seq = _next_seq(session, queue.engine, new.channel, new.stream_key)
    row = OutboxMessage(
        channel=new.channel,
        stream_key=new.stream_key,
        seq=seq,
        dedupe_key=new.dedupe_key,
        control_id=new.control_id,
        study_uid=new.study_uid,
        study_result_id=new.study_result_id,
        revision=new.revision,
        priority=new.priority,
        content_type=new.content_type,
        message=new.message,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    queue.put(session, send(row.id, new.channel), study_uid=new.study_uid, priority=new.priority)
    return row.id


def _next_seq(session: Session, engine: Engine, channel: str, stream_key: str) -> int:
    insert = sqlite.insert if is_sqlite(engine) else postgresql.insert
    session.execute(
        insert(DeliveryStream)
        .values(channel=channel, stream_key=stream_key, next_seq=1)
        .on_conflict_do_nothing(index_elements=["channel", "stream_key"])
    )
    # The UPDATE row-locks the stream until commit, so concurrent producers get distinct numbers.
    bumped = session.execute(
        update(DeliveryStream)
        .where(col(DeliveryStream.channel) == channel, col(DeliveryStream.stream_key) == stream_key)
        .values(next_seq=col(DeliveryStream.next_seq) + 1)
        .returning(col(DeliveryStream.next_seq))
    ).scalar_one()
    return int(bumped) - 1


def stream_holder(job: ClaimedJob) -> str:
    """Who holds a stream's send lease: the job attempt that sends."""
    return f"{job.worker_id}#{job.id}:{job.attempts}"


def release_streams(engine: Engine, jobs: list[ClaimedJob]) -> int:
    """Free the stream leases these job attempts hold (a worker shutting down gracefully), so
    that the patients' next messages need not wait for the lease to expire."""
    if not jobs:
        return 0
    with write_session(engine) as session:
        freed: int = session.execute(
            update(DeliveryStream)
            .where(col(DeliveryStream.locked_by).in_([stream_holder(j) for j in jobs]))
            .values(locked_by=None, lease_until=None)
        ).rowcount  # type: ignore[attr-defined]
    return freed


class OutboxDrainer:
    """The send-job handler: delivers a message and everything before it in its stream."""

    def __init__(
        self,
        engine: Engine,
        senders: Mapping[str, Sender],
        *,
        lease_seconds: float = 120.0,
        busy_wait_seconds: float = 10.0,
    ) -> None:
        self.engine = engine
        self.senders = dict(senders)
        self.lease = timedelta(seconds=lease_seconds)
        self.busy_wait = busy_wait_seconds

    def __call__(self, job: ClaimedJob) -> Commit | None:
        outbox_id = OutboxPayload.from_job(job).outbox_id
        own = self._load(outbox_id)
        if own is None or own.state != OutboxState.PENDING:
            return None  # delivered by an earlier drain of the stream, or dead-lettered
        holder = stream_holder(job)
        if not self._acquire(own, holder):
            if self._load_state(outbox_id) != OutboxState.PENDING:
                return None
            raise RetryableDelivery("another sender holds this patient's stream")
        drained = False
        try:
            last = self._drain(own, job, holder)
            drained = True
        finally:
            if not drained:
                self._release(own, holder)

        def commit(session: Session) -> None:
            # The own message is marked and the stream released in the job's completing
            # transaction: one write fewer per message.
            if last is not None:
                self._finish_in(session, last[0], OutboxState.DELIVERED, last[1])
            self._release_in(session, own, holder)

        return commit

    # -- the stream lease -------------------------------------------------------------------
    def _acquire(self, own: OutboxMessage, holder: str) -> bool:
        deadline = time.monotonic() + self.busy_wait
        while True:
            now = utcnow()
            with write_session(self.engine) as session:
                got = session.execute(
                    update(DeliveryStream)
                    .where(
                        col(DeliveryStream.channel) == own.channel,
                        col(DeliveryStream.stream_key) == own.stream_key,
                        or_(
                            col(DeliveryStream.locked_by).is_(None),
                            col(DeliveryStream.lease_until) < now,
                        ),
                    )
                    .values(locked_by=holder, lease_until=now + self.lease)
                ).rowcount  # type: ignore[attr-defined]
            if got:
                return True
            if time.monotonic() > deadline or self._load_state(own.id) != OutboxState.PENDING:
                return False
            time.sleep(0.05)

    def _release(self, own: OutboxMessage, holder: str) -> None:
        with write_session(self.engine) as session:
            self._release_in(session, own, holder)

    @staticmethod
    def _release_in(session: Session, own: OutboxMessage, holder: str) -> None:
        session.execute(
            update(DeliveryStream)
            .where(
                col(DeliveryStream.channel) == own.channel,
                col(DeliveryStream.stream_key) == own.stream_key,
                col(DeliveryStream.locked_by) == holder,
            )
            .values(locked_by=None, lease_until=None)
        )

    # -- sending ------------------------------------------------------------------------------
    def _drain(
        self, own: OutboxMessage, job: ClaimedJob, holder: str
    ) -> tuple[OutboxMessage, DeliveryOutcome] | None:
        """Send the stream up to ``own``; returns ``own`` and its outcome when it was accepted
        (marked by the caller's commit), None when ``own`` was no longer pending."""
        with read_session(self.engine) as session:
            rows = list(
                session.scalars(
                    select(OutboxMessage)
                    .where(
                        col(OutboxMessage.channel) == own.channel,
                        col(OutboxMessage.stream_key) == own.stream_key,
                        col(OutboxMessage.state) == OutboxState.PENDING.value,
                        col(OutboxMessage.seq) <= own.seq,
                    )
                    .order_by(col(OutboxMessage.seq))
                )
            )
        sender = self.senders.get(own.channel)
        if sender is None:
            raise PermanentDelivery(f"no sender configured for channel {own.channel}")
        for n, row in enumerate(rows):
            if n:
                self._renew(own, holder)
            outcome = self._send(sender, row)
            is_own = row.id == own.id
            if outcome.result == "delivered" and is_own:
                return row, outcome
            if outcome.result == "delivered":
                self._finish(row, OutboxState.DELIVERED, outcome)
            elif outcome.result == "reject":
                self._finish(row, OutboxState.DEAD, outcome)
                if is_own:
                    raise PermanentDelivery(f"{row.channel} refused: {outcome.detail}")
            else:
                last = is_own and job.attempts >= job.max_attempts
                self._finish(row, OutboxState.DEAD if last else None, outcome)
                raise RetryableDelivery(f"{row.channel}: {outcome.detail}")
        return None

    def _send(self, sender: Sender, row: OutboxMessage) -> DeliveryOutcome:
        try:
            return sender(row)
        except (RetryableDelivery, OSError) as exc:
            return DeliveryOutcome("retry", f"{type(exc).__name__}: {exc}")
        except PermanentDelivery as exc:
            return DeliveryOutcome("reject", str(exc))

    def _renew(self, own: OutboxMessage, holder: str) -> None:
        with write_session(self.engine) as session:
            session.execute(
                update(DeliveryStream)
                .where(
                    col(DeliveryStream.channel) == own.channel,
                    col(DeliveryStream.stream_key) == own.stream_key,
                    col(DeliveryStream.locked_by) == holder,
                )
                .values(lease_until=utcnow() + self.lease)
            )

    def _finish(
        self, row: OutboxMessage, state: OutboxState | None, outcome: DeliveryOutcome
    ) -> None:
        with write_session(self.engine) as session:
            self._finish_in(session, row, state, outcome)

    def _finish_in(
        self,
        session: Session,
        row: OutboxMessage,
        state: OutboxState | None,
        outcome: DeliveryOutcome,
    ) -> None:
        now = utcnow()
        values: dict[str, object] = {
            "attempts": col(OutboxMessage.attempts) + 1,
            "updated_at": now,
            "response": outcome.response,
        }
        if state is not None:
            values["state"] = state.value
        if state == OutboxState.DELIVERED:
            values["delivered_at"] = now
            values["last_error"] = None
        else:
            values["last_error"] = scrub(outcome.detail)[:2000]  # a peer may echo values
        session.execute(
            update(OutboxMessage).where(col(OutboxMessage.id) == row.id).values(**values)
        )
        label = outcome.result if state != OutboxState.DEAD else "dead"
        metrics.DELIVERIES.labels(channel=row.channel, outcome=label).inc()
        log.info(
            "[%s] %s message seq %d: %s", correlation_id(row.study_uid), row.channel, row.seq, label
        )

    def _load(self, outbox_id: int) -> OutboxMessage | None:
        with read_session(self.engine) as session:
            return session.get(OutboxMessage, outbox_id)

    def _load_state(self, outbox_id: int | None) -> str | None:
        with read_session(self.engine) as session:
            row = session.get(OutboxMessage, outbox_id)
            return None if row is None else row.state


# --- inspection and replay (the ``xraygate outbox`` CLI) ---------------------------------------


def list_messages(
    engine: Engine, *, state: str | None = None, channel: str | None = None, limit: int = 100
) -> list[OutboxMessage]:
    with read_session(engine) as session:
        query = select(OutboxMessage).order_by(col(OutboxMessage.id).desc()).limit(limit)
        if state:
            query = query.where(col(OutboxMessage.state) == state)
        if channel:
            query = query.where(col(OutboxMessage.channel) == channel)
        return list(session.scalars(query))


def retry_message(queue: JobQueue, outbox_id: int) -> None:
    """Put a dead (or delivered) message back: same bytes, same control ID, a fresh job budget."""
    with write_session(queue.engine) as session:
        row = session.get(OutboxMessage, outbox_id)
        if row is None:
            raise QueueError(f"no outbox message {outbox_id}")
        row.state = OutboxState.PENDING
        row.updated_at = utcnow()
        session.add(row)
        job = session.scalars(
            select(Job).where(col(Job.dedupe_key) == outbox_key(outbox_id))
        ).first()
    if job is None or job.id is None:
        raise QueueError(f"outbox message {outbox_id} has no send job")
    if job.state in (JobState.DEAD, JobState.DONE):
        queue.retry(job.id)  # else its job is still pending or running and will send it
