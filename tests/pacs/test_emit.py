"""What ``emit-pacs`` puts in the outbox, and what it leaves out (PACS off, shadow results,
results without an image read, superseded revisions). No PACS needed: nothing is sent here."""

from __future__ import annotations

import base64
from io import BytesIO

import pytest
from pydicom import dcmread
from sqlalchemy import select
from sqlmodel import col

from tests.orthanc import free_port
from tests.results_factory import Made, enqueue_emit, make_result, rescore
from xraygate.core.config import Settings
from xraygate.core.db import get_engine, read_session
from xraygate.core.jobs import JobKind
from xraygate.core.models import Channel, Job, OutboxMessage
from xraygate.core.queue import JobQueue
from xraygate.core.storage import store_from_settings
from xraygate.core.worker import Worker
from xraygate.pacs.sr import sr_instance_uid
from xraygate.pacs.worker import make_handlers


def _emit(settings: Settings, **kw: object) -> tuple[list[OutboxMessage], Made]:
    engine = get_engine(settings.resolved_database_url)
    queue = JobQueue(engine)
    made = make_result(engine, **kw)  # type: ignore[arg-type]
    enqueue_emit(engine, queue, JobKind.EMIT_PACS, made)
    handlers = make_handlers(settings, store_from_settings(settings), queue)
    worker = Worker(queue, {JobKind.EMIT_PACS: handlers[JobKind.EMIT_PACS]})
    while worker.run_once():
        pass
    with read_session(engine) as s:
        rows = list(s.scalars(select(OutboxMessage).order_by(col(OutboxMessage.id))))
    return rows, made


def _on(settings: Settings) -> Settings:
    # a port nobody listens on: emit never connects, only send-pacs would
    return settings.model_copy(update={"pacs_host": "127.0.0.1", "pacs_port": free_port()})


def test_emit_stores_one_sr_per_revision_as_sent(settings: Settings) -> None:
    rows, made = _emit(_on(settings), score=0.91, category="high")
    (row,) = rows
    assert row.channel == Channel.PACS and row.content_type == "application/dicom"
    ds = dcmread(BytesIO(base64.b64decode(row.message)))
    assert ds.SOPInstanceUID == row.control_id
    assert row.control_id == sr_instance_uid(made.study_uid, "cxr-demo:1.0.0", 1)
    assert row.stream_key == made.patient_key
    assert row.priority == 0 and row.revision == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("on", "kw"),
    [
        (False, {}),  # PACS off
        (True, {"shadow": True}),  # shadow results are never emitted
        (True, {"score": None, "category": "not-applicable"}),  # no image read: no SR
    ],
)
def test_nothing_is_queued_when_there_is_nothing_to_say(
    settings: Settings, on: bool, kw: dict[str, object]
) -> None:
    rows, _ = _emit(_on(settings) if on else settings, **kw)
    assert rows == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_superseded_revision_is_skipped(settings: Settings) -> None:
    settings = _on(settings)
    engine = get_engine(settings.resolved_database_url)
    queue = JobQueue(engine)
    made = make_result(engine)
    enqueue_emit(engine, queue, JobKind.EMIT_PACS, made)  # revision 1 ...
    rescore(engine, made.result_id, score=0.3, category="indeterminate")  # ... superseded
    enqueue_emit(engine, queue, JobKind.EMIT_PACS, made)
    handlers = make_handlers(settings, store_from_settings(settings), queue)
    worker = Worker(queue, {JobKind.EMIT_PACS: handlers[JobKind.EMIT_PACS]})
    while worker.run_once():
        pass
    with read_session(engine) as s:
        rows = list(s.scalars(select(OutboxMessage)))
        emits = list(s.scalars(select(Job).where(col(Job.kind) == JobKind.EMIT_PACS.value)))
    assert len(emits) == 2 and all(j.state == "done" for j in emits)
    (row,) = rows
    assert row.revision == 2
    assert row.control_id == sr_instance_uid(made.study_uid, "cxr-demo:1.0.0", 2)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_emit_waits_until_the_study_is_stable(settings: Settings) -> None:
    waiting = _on(settings).model_copy(update={"study_stable_seconds": 3600.0})
    rows, made = _emit(waiting)
    assert rows == []  # images arrived just now: no SR yet
    with read_session(get_engine(settings.resolved_database_url)) as s:
        (job,) = s.scalars(select(Job).where(col(Job.kind) == JobKind.EMIT_PACS.value))
    assert job.state == "pending" and job.study_uid == made.study_uid
