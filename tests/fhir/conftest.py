"""FHIR test set-up: the area's handlers over the real queue, fast retries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from xraygate.core.config import Settings
from xraygate.core.db import get_engine, read_session
from xraygate.core.models import FhirResource, Job, OutboxMessage
from xraygate.core.queue import JobQueue, RetryPolicy
from xraygate.core.storage import store_from_settings
from xraygate.core.worker import Handler
from xraygate.fhir.worker import make_handlers


@dataclass
class FhirEnv:
    settings: Settings
    queue: JobQueue
    handlers: dict[str, Handler]

    def current(self, resource_type: str) -> list[dict[str, Any]]:
        with read_session(self.queue.engine) as s:
            rows = s.scalars(
                select(FhirResource).where(
                    col(FhirResource.resource_type) == resource_type,
                    col(FhirResource.is_current).is_(True),
                )
            ).all()
            return [r.content for r in rows]

    def versions(self, resource_type: str) -> list[FhirResource]:
        with read_session(self.queue.engine) as s:
            return list(
                s.scalars(
                    select(FhirResource)
                    .where(col(FhirResource.resource_type) == resource_type)
                    .order_by(col(FhirResource.version_id))
                )
            )

    def outbox(self) -> list[OutboxMessage]:
        with read_session(self.queue.engine) as s:
            return list(s.scalars(select(OutboxMessage).order_by(col(OutboxMessage.id))))

    def jobs(self, kind: str) -> list[Job]:
        with read_session(self.queue.engine) as s:
            return list(s.scalars(select(Job).where(col(Job.kind) == kind)))

    def all_final(self) -> bool:
        with read_session(self.queue.engine) as s:
            return not s.scalars(
                select(Job).where(col(Job.state).in_(["pending", "running"]))
            ).all()


def make_env(base: Settings, **extra: object) -> FhirEnv:
    settings = base.model_copy(update={"delivery_max_attempts": 6, **extra})
    engine = get_engine(settings.resolved_database_url)
    queue = JobQueue(
        engine, policy=RetryPolicy(max_attempts=6, backoff_seconds=0.1, backoff_max_seconds=0.4)
    )
    return FhirEnv(settings, queue, make_handlers(settings, store_from_settings(settings), queue))
