"""Images that arrive after a study's first ORU: the revised result's ORU says so in an NTE,
as the FHIR report does in its conclusion (issue 10, study completeness: "flagged in both
channels"). Each message parses with hl7apy at strict validation and with python-hl7."""

from __future__ import annotations

from collections.abc import Callable

import hl7

from tests.hl7.conftest import Hl7Env, make_env
from tests.mllp_listener import MllpListener
from tests.results_factory import Made, add_late_image, enqueue_emit, make_result, rescore
from xraygate.core.config import Settings
from xraygate.core.vocabulary import LATE_IMAGES_NOTE
from xraygate.core.worker import Worker
from xraygate.hl7.oru import validate


def _notes(er7: str) -> list[str]:
    validate(er7)  # hl7apy, strict
    message = hl7.parse(er7.replace("\r\n", "\r"))
    return [str(segment[3]) for segment in message.segments("NTE")]


def _reported(settings: Settings) -> tuple[Hl7Env, Made, Callable[[], None]]:
    """A two-image study whose first ORU was made; and a function emitting it again."""
    env = make_env(settings, MllpListener(), study_stable_seconds=0.0)
    made = make_result(env.queue.engine, n_instances=2, score=0.3, category="low")
    worker = Worker(env.queue, {"emit-hl7": env.handlers["emit-hl7"]})

    def emit() -> None:
        enqueue_emit(env.queue.engine, env.queue, "emit-hl7", made)
        while worker.run_once():
            pass

    emit()
    return env, made, emit


def test_an_image_after_the_first_oru_flags_the_revised_oru(settings: Settings) -> None:
    env, made, emit = _reported(settings)
    [first] = env.outbox()
    assert not any(LATE_IMAGES_NOTE in note for note in _notes(first.message))

    add_late_image(env.queue.engine, made)  # after the first ORU was made
    rescore(env.queue.engine, made.result_id, score=0.93, category="high")
    emit()
    revised = [m for m in env.outbox() if m.revision == 2]
    assert revised, "the revision made an ORU"
    notes = _notes(revised[0].message)
    assert LATE_IMAGES_NOTE in notes, notes
    assert notes.index(LATE_IMAGES_NOTE) == 1, "after the AI statement"


def test_a_rescore_without_new_images_is_not_flagged(settings: Settings) -> None:
    env, made, emit = _reported(settings)
    rescore(env.queue.engine, made.result_id, score=0.93, category="high")
    emit()
    messages = [m for m in env.outbox() if m.channel == "hl7"]
    assert len(messages) == 2
    for message in messages:
        assert LATE_IMAGES_NOTE not in _notes(message.message)
