"""PACS test set-up: Orthanc as the PACS, settings pointing at it, fast retries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import col

from tests.orthanc import Orthanc
from xraygate.core.config import Settings
from xraygate.core.db import get_engine, read_session
from xraygate.core.models import Channel, Job, OutboxMessage
from xraygate.core.queue import JobQueue, RetryPolicy
from xraygate.core.storage import ObjectStore, store_from_settings


@dataclass
class PacsEnv:
    settings: Settings
    queue: JobQueue
    store: ObjectStore

    def outbox(self) -> list[OutboxMessage]:
        with read_session(self.queue.engine) as s:
            return list(
                s.scalars(
                    select(OutboxMessage)
                    .where(col(OutboxMessage.channel) == Channel.PACS.value)
                    .order_by(col(OutboxMessage.id))
                )
            )

    def jobs(self, kind: str) -> list[Job]:
        with read_session(self.queue.engine) as s:
            return list(s.scalars(select(Job).where(col(Job.kind) == kind)))

    def all_final(self) -> bool:
        with read_session(self.queue.engine) as s:
            return not s.scalars(
                select(Job).where(col(Job.state).in_(["pending", "running"]))
            ).all()


def pacs_env(base: Settings, pacs: Orthanc, **extra: object) -> PacsEnv:
    settings = base.model_copy(
        update={
            "pacs_host": "127.0.0.1",
            "pacs_port": pacs.dicom_port,
            "pacs_ae": pacs.aet,
            "pacs_timeout": 5.0,
            "delivery_max_attempts": 60,
            **extra,
        }
    )
    engine = get_engine(settings.resolved_database_url)
    queue = JobQueue(
        engine, policy=RetryPolicy(max_attempts=8, backoff_seconds=0.1, backoff_max_seconds=0.3)
    )
    return PacsEnv(settings, queue, store_from_settings(settings))


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """Orthanc, configured but not started: the test starts (and may stop) it."""
    server = Orthanc(tmp_path / "orthanc")
    try:
        yield server
    finally:
        server.stop()
