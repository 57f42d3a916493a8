"""The ``deidentify`` job through the real queue and Worker, on SQLite and PostgreSQL, with the
export store local or on the loopback S3 endpoint; clinician feedback re-exports with its label."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import pytest
from pydicom import dcmread
from sqlalchemy import select
from sqlmodel import col

from tests.anonymizer.conftest import Made, drain, enqueue_deidentify, make_study
from tests.anonymizer.corpus import leaks, phi_dataset, to_bytes
from tests.anonymizer.pixel_corpus import Planted, burn_in, chest_cr, readable
from xraygate.anonymizer.site import export_store
from xraygate.anonymizer.worker import make_handlers
from xraygate.core import db, metrics
from xraygate.core.config import Settings, get_settings
from xraygate.core.models import (
    DeidDecision,
    DeidExport,
    DeidQuarantine,
    Feedback,
    Instance,
    Job,
)
from xraygate.core.models.deid import Finding, held_thumbnail_key, record_feedback
from xraygate.core.queue import JobQueue
from xraygate.core.storage import ObjectStore, store_from_settings

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3"])
def deid_settings(
    request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The parametrized database, with the export store local or on S3 (own bucket and keys)."""
    monkeypatch.setenv("XRAYGATE_DEID_SECRET", "flow-test-secret")
    if request.param == "s3":
        endpoint: str = request.getfixturevalue("s3_endpoint")
        monkeypatch.setenv("XRAYGATE_EXPORT_STORAGE_URL", f"s3://exp-{uuid.uuid4().hex[:8]}/out")
        monkeypatch.setenv("XRAYGATE_EXPORT_S3_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("XRAYGATE_EXPORT_S3_ACCESS_KEY_ID", "export-key")
        monkeypatch.setenv("XRAYGATE_EXPORT_S3_SECRET_ACCESS_KEY", "export-secret")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


class Env:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = db.get_engine(settings.resolved_database_url)
        self.store = store_from_settings(settings)
        self.queue = JobQueue.from_settings(settings)
        self.handlers = make_handlers(settings, self.store, self.queue)
        self.target: ObjectStore = export_store(settings)

    def study(self, files: list[bytes], **kw: object) -> Made:
        made = make_study(self.engine, self.store, files, **kw)  # type: ignore[arg-type]
        enqueue_deidentify(self.engine, self.queue, made)
        return made

    def run(self) -> int:
        return drain(self.queue, self.handlers)

    def exports(self, made: Made) -> list[DeidExport]:
        with db.read_session(self.engine) as s:
            return list(
                s.scalars(
                    select(DeidExport)
                    .where(col(DeidExport.study_pk) == made.study_pk)
                    .order_by(col(DeidExport.id))
                )
            )

    def decisions(self, made: Made) -> list[DeidDecision]:
        with db.read_session(self.engine) as s:
            return list(
                s.scalars(select(DeidDecision).where(col(DeidDecision.study_pk) == made.study_pk))
            )

    def feedback(self, made: Made, finding: Finding) -> Feedback:
        with db.write_session(self.engine) as s:
            row = record_feedback(s, self.queue, made.study_uid, finding, author="dr-test")
            assert row is not None
            return row

    def manifest(self, key: str) -> list[dict[str, object]]:
        text = self.target.get_bytes(key).decode()
        return [json.loads(line) for line in text.splitlines()]


def _value(counter: object, label: str) -> float:
    return float(counter.labels(label)._value.get())  # type: ignore[attr-defined]


def test_indeterminate_study_is_exported_with_manifest_and_bad_input_quarantined(
    deid_settings: Settings,
) -> None:
    env = Env(deid_settings)
    garbage = b"\0" * 128 + b"DICM" + b"definitely not a dataset" * 10
    burned = to_bytes(phi_dataset(7, burned_in="YES"))
    before = _value(metrics.DEID_EXPORTS, "exported")
    made = env.study([to_bytes(phi_dataset(0)), to_bytes(phi_dataset(1)), garbage, burned])
    assert env.run() == 1

    rows = env.exports(made)
    assert [r.status for r in rows] == ["exported", "exported", "skipped"]
    assert "burned-in" in rows[2].reason and rows[2].object_key == ""
    exported = rows[:2]
    assert all(r.object_key.startswith("images/UNLABELED/") for r in exported)
    assert all(r.label_source == "none" and r.label == "" for r in exported)
    assert len({r.pseudo_study_uid for r in exported}) == 1
    keys = sorted(env.target.list())
    assert keys == sorted([*(r.object_key for r in exported), exported[0].manifest_key])
    for row in exported:  # the exported objects themselves carry no planted value
        data = env.target.get_bytes(row.object_key)
        assert leaks(data) == []
        assert dcmread(io.BytesIO(data)).SOPInstanceUID == row.pseudo_sop_uid
    lines = env.manifest(exported[0].manifest_key)
    assert {line["pseudo_sop_uid"] for line in lines} == {r.pseudo_sop_uid for r in exported}
    assert {line["model_version"] for line in lines} == {"cxr-demo:1.0.0"}
    assert {line["score"] for line in lines} == {0.7}
    assert {(line["label_source"], line["label"]) for line in lines} == {("none", "")}

    with db.read_session(env.engine) as s:
        quarantined = list(s.scalars(select(DeidQuarantine)))
    assert len(quarantined) == 1 and "File Meta" in quarantined[0].reason
    assert quarantined[0].instance_pk == made.instance_pks[2]
    assert not any(quarantined[0].object_key.split("/")[-1] in k for k in keys)  # never exported
    (decision,) = env.decisions(made)
    assert decision.selected and (decision.exported, decision.skipped, decision.quarantined) == (
        2,
        1,
        1,
    )
    assert _value(metrics.DEID_EXPORTS, "exported") == before + 2


def test_confident_study_is_not_exported_until_a_clinician_corrects_it(
    deid_settings: Settings,
) -> None:
    env = Env(deid_settings)
    made = env.study([to_bytes(phi_dataset(0))], category="high", score=0.97)
    env.run()
    (decision,) = env.decisions(made)
    assert not decision.selected and "not selected" in decision.reason
    assert env.exports(made) == [] and list(env.target.list()) == []

    before = _value(metrics.FEEDBACK, "disagree")
    fb = env.feedback(made, Finding.REJECT)
    assert fb.agreement == "disagree" and fb.label == "NORMAL"
    assert _value(metrics.FEEDBACK, "disagree") == before + 1
    assert env.run() == 1
    (row,) = env.exports(made)
    assert row.status == "exported" and row.object_key.startswith("images/NORMAL/")
    assert (row.label_source, row.label) == ("clinician", "NORMAL")
    (line,) = env.manifest(row.manifest_key)
    assert (line["label_source"], line["label"]) == ("clinician", "NORMAL")
    assert line["category"] == "high"


def test_feedback_moves_an_exported_image_to_its_label_folder(deid_settings: Settings) -> None:
    env = Env(deid_settings)
    made = env.study([to_bytes(phi_dataset(0))])
    env.run()
    (first,) = env.exports(made)
    assert first.object_key.startswith("images/UNLABELED/")

    env.feedback(made, Finding.CONFIRM)
    assert env.run() == 1
    (moved,) = env.exports(made)
    assert moved.id == first.id and moved.pseudo_sop_uid == first.pseudo_sop_uid  # same UIDs
    assert moved.object_key == first.object_key.replace("UNLABELED", "PNEUMONIA")
    assert not env.target.exists(first.object_key) and env.target.exists(moved.object_key)
    (line,) = env.manifest(moved.manifest_key)
    assert (line["label_source"], line["label"]) == ("clinician", "PNEUMONIA")


def test_superseded_revision_is_skipped_with_reason(deid_settings: Settings) -> None:
    env = Env(deid_settings)
    made = env.study([to_bytes(phi_dataset(0))])
    with db.write_session(env.engine) as s:
        from xraygate.core.models import StudyResult

        row = s.get(StudyResult, made.result_id)
        assert row is not None
        row.revision = 2
        s.add(row)
    env.run()
    (decision,) = env.decisions(made)
    assert not decision.selected and decision.reason == "superseded by revision 2"
    with db.read_session(env.engine) as s:
        job = s.scalars(select(Job).where(col(Job.kind) == "deidentify")).one()
    assert job.state == "done"


def test_low_confidence_score_near_threshold_is_exported(deid_settings: Settings) -> None:
    env = Env(deid_settings)
    near = env.study([to_bytes(phi_dataset(0))], category="low", score=0.58)
    far = env.study(
        [to_bytes(phi_dataset(1))], category="low", score=0.1, study_uid="1.2.3.4.5.6.99"
    )
    env.run()
    assert env.decisions(near)[0].selected and "low confidence" in env.decisions(near)[0].reason
    assert not env.decisions(far)[0].selected
    (row,) = env.exports(near)
    assert (row.label_source, row.label) == ("model", "NORMAL")
    assert row.object_key.startswith("images/UNLABELED/")  # model labels never train a model


def _burned_in_cr() -> tuple[bytes, list[Planted]]:
    """A real chest CR, BurnedInAnnotation absent, with a name and an ID burned in."""
    ds = chest_cr()
    planted = [
        burn_in(ds, "FAIRWEATHER, ODETTE", ("FAIRWEATHER", "ODETTE"), corner="tr", size=64),
        burn_in(ds, "MRN 40417732", ("40417732",), corner="bl", size=48, contrast="medium"),
    ]
    assert readable(ds, planted)  # OCR reads them in the input
    return to_bytes(ds), planted


def test_burned_in_text_reaches_the_export_store_blanked(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XRAYGATE_DEID_SECRET", "flow-test-secret")
    get_settings.cache_clear()
    env = Env(get_settings())
    data, planted = _burned_in_cr()
    made = env.study([data])  # indeterminate: selected for export
    assert env.run() == 1
    (row,) = env.exports(made)
    assert row.status == "exported" and row.pixels_cleaned and "113101" in row.method_codes
    out = dcmread(io.BytesIO(env.target.get_bytes(row.object_key)))
    assert readable(out, planted) == []  # OCR reads none of it in what left the site
    assert out.BurnedInAnnotation == "NO"
    (line,) = env.manifest(row.manifest_key)
    assert line["pixel_phi"]["action"] == "blanked" and len(line["pixel_phi"]["regions"]) >= 2
    assert all(len(region) == 5 for region in line["pixel_phi"]["regions"])
    get_settings.cache_clear()


def test_hold_mode_keeps_the_image_on_site_with_a_review_thumbnail(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XRAYGATE_DEID_SECRET", "flow-test-secret")
    monkeypatch.setenv("XRAYGATE_DEID_PIXEL_PHI", "hold")
    get_settings.cache_clear()
    env = Env(get_settings())
    data, _ = _burned_in_cr()
    made = env.study([data, to_bytes(phi_dataset(0))])
    before = _value(metrics.DEID_EXPORTS, "held")
    assert env.run() == 1
    held, clean = env.exports(made)
    assert held.status == "held" and "burned-in text" in held.reason and held.object_key == ""
    assert clean.status == "exported"
    assert len(list(env.target.list(prefix="images/"))) == 1  # only the clean image left
    with db.read_session(env.engine) as s:
        inst = s.get(Instance, held.instance_pk)
        assert inst is not None
    thumb = env.store.get_bytes(held_thumbnail_key(inst.sha256))
    assert thumb.startswith(b"\x89PNG")
    (decision,) = env.decisions(made)
    assert (decision.exported, decision.skipped) == (1, 1)
    assert _value(metrics.DEID_EXPORTS, "held") == before + 1
    get_settings.cache_clear()
