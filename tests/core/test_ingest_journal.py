"""The ingest journal and the batch indexer: durable records, replay after a kill, idempotency."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
from pathlib import Path

import pytest
from sqlmodel import select

from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.ingest.header import IndexRecord
from xraygate.core.ingest.indexer import BatchIndexer, IndexerThread
from xraygate.core.ingest.journal import Entry, Journal, read_segment
from xraygate.core.models import Instance, Job, Patient, Series, Study, utcnow
from xraygate.core.queue import JobQueue


def record(n: int, sha: str = "a", study: int = 0) -> IndexRecord:
    instance = {
        "sop_instance_uid": f"1.2.3.{n}",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
        "instance_number": n,
        "object_key": f"dicom/s/x/1.2.3.{n}.{sha * 16}.dcm",
        "size": 10,
        "sha256": sha * 64,
        "calling_aet": "MOD",
        "received_at": utcnow(),
    }
    patient = {
        "patient_key": f"|P{study}",
        "patient_id": f"P{study}",
        "issuer": "",
        "name": "Doe^J",
        "birth_date": "",
        "sex": "",
    }
    study_values = {
        "study_instance_uid": f"1.2.9.{study}",
        "accession_number": "",
        "study_date": "",
        "study_time": "",
        "description": "",
        "referring_physician": "",
    }
    series = {
        "series_instance_uid": f"1.2.8.{study}",
        "modality": "CR",
        "body_part": "CHEST",
        "series_number": 1,
        "description": "",
    }
    return IndexRecord(patient, study_values, series, instance)


def test_records_survive_and_done_ones_are_not_replayed(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    entries = [journal.append(record(n)) for n in range(5)]
    journal.done(entries[:2])
    [segment] = list(tmp_path.glob("*.journal"))
    assert [r.sop_instance_uid for r in read_segment(segment)] == [
        f"1.2.3.{n}" for n in range(2, 5)
    ]
    again = read_segment(segment)[0]
    assert again.instance == entries[2].record.instance  # received_at round-trips


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(record(1))
    [segment] = list(tmp_path.glob("*.journal"))
    with segment.open("ab") as fh:
        fh.write(json.dumps(record(2).to_json()).encode()[:40])  # killed mid-write
    assert [r.sop_instance_uid for r in read_segment(segment)] == ["1.2.3.1"]


def _append_and_die(directory: str, ready: object) -> None:
    journal = Journal(Path(directory))
    for n in range(3):
        journal.append(record(n))
    ready.set()  # type: ignore[attr-defined]
    threading.Event().wait(60)


def test_a_live_process_segment_is_left_alone_a_dead_one_is_taken_over(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_append_and_die, args=(str(tmp_path), ready))
    proc.start()
    try:
        assert ready.wait(60)
        assert Journal(tmp_path).recover() == [], "its owner holds the lock"
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        recovered = Journal(tmp_path)
        entries = recovered.recover()
        assert [e.record.sop_instance_uid for e in entries] == [f"1.2.3.{n}" for n in range(3)]
        assert Journal(tmp_path).recover() == [], "taken over once"
        recovered.done(entries)
        assert list(tmp_path.glob("*.journal")) == [], "a replayed segment is deleted when done"
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(30)


def test_segments_rotate_and_finished_ones_are_deleted(tmp_path: Path) -> None:
    journal = Journal(tmp_path, rotate_bytes=1)
    entries = [journal.append(record(n)) for n in range(3)]
    assert len(list(tmp_path.glob("*.journal"))) == 3
    journal.done(entries)
    assert len(list(tmp_path.glob("*.journal"))) == 1, "the active one stays"
    journal.close()
    assert list(tmp_path.glob("*.journal")) == []


def _rows(settings: Settings, model: type) -> list:  # type: ignore[type-arg]
    engine = db.get_engine(settings.resolved_database_url)
    with db.read_session(engine) as session:
        return list(session.exec(select(model)).all())


def test_batch_index_is_idempotent_and_repoints_new_content(settings: Settings) -> None:
    indexer = BatchIndexer(JobQueue.from_settings(settings))
    batch = [record(n, study=n % 2) for n in range(6)]
    assert indexer.index(batch) == 6
    assert indexer.index(batch) == 0, "replayed: nothing new"
    assert len(_rows(settings, Instance)) == 6 and len(_rows(settings, Job)) == 6
    assert len(_rows(settings, Patient)) == 2 and len(_rows(settings, Study)) == 2
    assert len(_rows(settings, Series)) == 2
    fresh = BatchIndexer(JobQueue.from_settings(settings))  # another process: empty cache
    assert fresh.index([record(0, sha="b", study=0), record(0, sha="c", study=0)]) == 1
    [row] = [i for i in _rows(settings, Instance) if i.sop_instance_uid == "1.2.3.0"]
    assert row.sha256 == "c" * 64, "the later of two in a batch wins"
    keys = sorted(j.dedupe_key for j in _rows(settings, Job) if j.instance_uid == "1.2.3.0")
    assert keys == ["1.2.3.0:" + "a" * 64, "1.2.3.0:" + "c" * 64]


def test_indexer_thread_commits_in_batches_and_retries_after_an_outage(
    settings: Settings,
) -> None:
    from sqlalchemy import text

    queue = JobQueue.from_settings(settings)
    indexer = BatchIndexer(queue)
    done: list[Entry] = []
    batches: list[int] = []
    original = indexer.index

    def counted(records):  # type: ignore[no-untyped-def]
        records = list(records)
        batches.append(len(records))
        return original(records)

    indexer.index = counted  # type: ignore[method-assign]
    journal = Journal(settings.journal_dir)

    def on_done(entries: list[Entry]) -> None:
        done.extend(entries)
        journal.done(entries)

    thread = IndexerThread(indexer, on_done, batch_size=4, retry_seconds=0.01)
    with queue.engine.begin() as conn:
        conn.execute(text("ALTER TABLE jobs RENAME TO jobs_away"))
    thread.submit([journal.append(record(n)) for n in range(10)])
    thread.start()
    try:
        assert not thread.flush(0.5), "nothing commits while the database is down"
        assert thread.failing
        with queue.engine.begin() as conn:
            conn.execute(text("ALTER TABLE jobs_away RENAME TO jobs"))
        assert thread.flush(60)
        assert not thread.failing
        assert len(done) == 10 and len(_rows(settings, Instance)) == 10
        assert max(batches) == 4, "group commit: batches of up to batch_size"
    finally:
        thread.stop(10)
    journal.close()
    assert list(settings.journal_dir.glob("*.journal")) == []


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> None:
    before = {t.name for t in threading.enumerate()}
    yield
    leaked = {t.name for t in threading.enumerate() if t.is_alive()} - before
    assert "ingest-indexer" not in leaked
