"""HL7 test set-up: settings pointed at a loopback MLLP listener, fast retries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlmodel import col

from tests.mllp_listener import MllpListener
from xraygate.core.config import Settings
from xraygate.core.db import get_engine, read_session
from xraygate.core.models import Job, OutboxMessage
from xraygate.core.queue import JobQueue, RetryPolicy
from xraygate.core.storage import store_from_settings
from xraygate.core.worker import Handler
from xraygate.hl7.worker import make_handlers


@dataclass
class Hl7Env:
    settings: Settings
    queue: JobQueue
    handlers: dict[str, Handler]

    def outbox(self, channel: str = "hl7") -> list[OutboxMessage]:
        with read_session(self.queue.engine) as s:
            return list(
                s.scalars(
                    select(OutboxMessage)
                    .where(col(OutboxMessage.channel) == channel)
                    .order_by(col(OutboxMessage.id))
                )
            )

    def jobs(self, kind: str) -> list[Job]:
        with read_session(self.queue.engine) as s:
            return list(s.scalars(select(Job).where(col(Job.kind) == kind)))

    def all_final(self) -> bool:
        with read_session(self.queue.engine) as s:
            open_jobs = s.scalars(
                select(Job).where(col(Job.state).in_(["pending", "running"]))
            ).all()
        return not open_jobs


def make_env(base: Settings, listener: MllpListener, **extra: object) -> Hl7Env:
    settings = base.model_copy(
        update={
            "hl7_host": "127.0.0.1",
            "hl7_port": listener.port,
            "hl7_timeout": 10.0,  # an ACK after a strict hl7apy parse on a loaded CI machine
            "delivery_max_attempts": 8,
            **extra,
        }
    )
    engine = get_engine(settings.resolved_database_url)
    queue = JobQueue(
        engine, policy=RetryPolicy(max_attempts=8, backoff_seconds=0.1, backoff_max_seconds=0.4)
    )
    handlers = make_handlers(settings, store_from_settings(settings), queue)
    return Hl7Env(settings, queue, handlers)


@pytest.fixture
def listener() -> Iterator[MllpListener]:
    with MllpListener(strict_parse=True) as lst:
        yield lst
