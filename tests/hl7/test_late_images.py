"""Images that arrive after a study's first ORU: the revised result's ORU says so in an NTE,
as the FHIR report does in its conclusion (issue 10, study completeness: "flagged in both
channels"). Each message parses with hl7apy at strict validation and with python-hl7."""

from __future__ import annotations

from datetime import timedelta

import hl7
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlmodel import col

from tests.hl7.conftest import make_env
from tests.mllp_listener import MllpListener
from tests.results_factory import enqueue_emit, make_result, rescore
from xraygate.core.config import Settings
from xraygate.core.db import write_session
from xraygate.core.models import Instance, utcnow
from xraygate.core.vocabulary import LATE_IMAGES_NOTE
from xraygate.core.worker import Worker
from xraygate.hl7.oru import validate


def _notes(er7: str) -> list[str]:
    validate(er7)  # hl7apy, strict
    message = hl7.parse(er7.replace("\r\n", "\r"))
    return [str(segment[3]) for segment in message.segments("NTE")]


def test_an_image_after_the_first_oru_flags_the_revised_oru(settings: Settings) -> None:
    env = make_env(settings, MllpListener(), study_stable_seconds=0.0)
    engine = env.queue.engine
    made = make_result(engine, n_instances=2, score=0.3, category="low")
    worker = Worker(env.queue, {"emit-hl7": env.handlers["emit-hl7"]})
    enqueue_emit(engine, env.queue, "emit-hl7", made)
    while worker.run_once():
        pass
    [first] = env.outbox()
    assert not any(LATE_IMAGES_NOTE in note for note in _notes(first.message))

    with write_session(engine) as s:  # a third image, after the first ORU was made
        uid = made.instance_uids[0]
        known = s.scalars(select(Instance).where(col(Instance.sop_instance_uid) == uid)).one()
        s.add(
            Instance(
                sop_instance_uid=generate_uid(),
                series_pk=known.series_pk,
                study_pk=known.study_pk,
                sop_class_uid=known.sop_class_uid,
                transfer_syntax_uid=known.transfer_syntax_uid,
                object_key="objects/late",
                size=1,
                sha256="1" * 64,
                received_at=utcnow() + timedelta(seconds=1),
            )
        )
    rescore(engine, made.result_id, score=0.93, category="high")
    enqueue_emit(engine, env.queue, "emit-hl7", made)
    while worker.run_once():
        pass
    revised = [m for m in env.outbox() if m.revision == 2]
    assert revised, "the revision made an ORU"
    notes = _notes(revised[0].message)
    assert LATE_IMAGES_NOTE in notes, notes
    assert notes.index(LATE_IMAGES_NOTE) == 1, "after the AI statement"


def test_a_rescore_without_new_images_is_not_flagged(settings: Settings) -> None:
    env = make_env(settings, MllpListener(), study_stable_seconds=0.0)
    engine = env.queue.engine
    made = make_result(engine, n_instances=2, score=0.3, category="low")
    worker = Worker(env.queue, {"emit-hl7": env.handlers["emit-hl7"]})
    enqueue_emit(engine, env.queue, "emit-hl7", made)
    while worker.run_once():
        pass
    rescore(engine, made.result_id, score=0.93, category="high")
    enqueue_emit(engine, env.queue, "emit-hl7", made)
    while worker.run_once():
        pass
    messages = [m for m in env.outbox() if m.channel == "hl7"]
    assert len(messages) == 2
    for message in messages:
        assert LATE_IMAGES_NOTE not in _notes(message.message)
