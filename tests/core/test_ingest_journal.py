"""The ingest journal and the batch indexer: durable records, replay after a kill, idempotency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import threading
from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize("cut", [1, 300, 5011], ids=["newline", "object", "line"])
def test_a_torn_last_object_is_skipped_and_cut_off_on_take_over(tmp_path: Path, cut: int) -> None:
    """Records journaled with their objects: one written whole comes back with its bytes (a
    newline inside the object does not end it); a last one cut anywhere (its object, the
    newline after it, its line) was never acknowledged: skipped, and the segment is cut
    back to the whole records before ``done`` lines follow them."""
    from xraygate.core.ingest.journal import read_records

    blob = b"DICM\n" * 1000  # 5000 bytes, with newlines
    writer = Journal(tmp_path)
    writer.append(record(1), blob=blob)
    writer.append(record(2), blob=blob)
    [segment] = list(tmp_path.glob("*.journal"))
    whole = segment.stat().st_size
    with segment.open("r+b") as fh:
        fh.truncate(whole - cut)  # killed while writing the second record
    records, end = read_records(segment)
    assert [(r.sop_instance_uid, b) for r, b in records] == [("1.2.3.1", blob)]
    for held in writer._segments.values():
        os.close(held.fd)  # the writer is gone
    reader = Journal(tmp_path)
    [entry] = reader.recover()
    assert entry.blob == blob and segment.stat().st_size == end
    reader.done([entry])
    assert list(tmp_path.glob("*.journal")) == []


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


def _count_flushes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    from xraygate.core.ingest import journal as journal_module

    counts = {"fsync": 0, "fdatasync": 0, "syncfs": 0}
    fsync, fdatasync, syncfs = os.fsync, os.fdatasync, journal_module._syncfs

    def counted(name: str, real: object) -> object:
        def call(arg: object) -> None:
            counts[name] += 1
            real(arg)  # type: ignore[operator]

        return call

    monkeypatch.setattr(os, "fsync", counted("fsync", fsync))
    monkeypatch.setattr(os, "fdatasync", counted("fdatasync", fdatasync))
    monkeypatch.setattr(journal_module, "_syncfs", counted("syncfs", syncfs))
    return counts


def _received(ds: Any, path: Path | None = None, data: bytes | None = None) -> Any:
    """What a receiver hands the ingest for ``ds`` spooled at ``path`` or held as ``data``."""
    from xraygate.core.ingest.header import Received

    return Received(
        path=path,
        data=data,
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        calling_aet="MOD",
    )


@pytest.mark.parametrize("mode", ["syncfs", "fsync"])
def test_an_ingested_object_is_flushed_once_with_syncfs(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """With ``syncfs`` one flush makes the object, its directory and the journal line durable;
    with ``fsync`` the object file, its new directories, the directory and the journal each."""
    from pydicom import examples

    from xraygate.core.ingest.ingestor import Ingestor
    from xraygate.core.ingest.journal import syncfs_available
    from xraygate.core.storage import LocalStore

    if mode == "syncfs":
        assert syncfs_available(), "Linux has syncfs(2)"
    configured = settings.model_copy(update={"ingest_sync": mode, "min_free_bytes": 0})
    store = LocalStore(configured.data_dir / "objects")
    ingestor = Ingestor(configured, store, JobQueue.from_settings(configured))
    try:
        for n in range(2):  # the second object's directories exist already
            ds = examples.ct
            ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{n}"
            spool = configured.tmp_dir / f"spool-{n}.dcm"
            spool.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(spool, enforce_file_format=True)
            counts = _count_flushes(monkeypatch)
            assert ingestor.ingest(_received(ds, path=spool)).status == 0
            monkeypatch.undo()
            new_segment = 1 if n == 0 else 0  # the journal segment's directory entry
            if mode == "syncfs":
                assert counts == {"fsync": new_segment, "fdatasync": 0, "syncfs": 1}, counts
            elif n == 0:  # object, its new study and series directories' entries, dir, journal
                assert counts["syncfs"] == 0 and counts["fdatasync"] == 1, counts
                assert counts["fsync"] >= 4, counts
            else:
                assert counts == {"fsync": 2, "fdatasync": 1, "syncfs": 0}, counts
        assert ingestor.flush(30)
    finally:
        ingestor.close()
    with db.read_session(db.get_engine(configured.resolved_database_url)) as session:
        rows = session.exec(select(Instance)).all()
    assert len(rows) == 2
    for row in rows:
        assert store.get_bytes(row.object_key)


@pytest.mark.parametrize("mode", ["syncfs", "fsync"])
def test_an_object_received_in_memory_is_journaled_with_its_record(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The answer waits for one fdatasync of the journal (object + record in one append), no
    file in the store; the indexer puts the object in the store (durably) before indexing it,
    and a restart that finds the record unindexed puts it there from the journal."""
    from io import BytesIO

    from pydicom import examples

    from xraygate.core.ingest.ingestor import Ingestor
    from xraygate.core.storage import LocalStore

    configured = settings.model_copy(update={"ingest_sync": mode, "min_free_bytes": 0})
    store = LocalStore(configured.data_dir / "objects")
    queue = JobQueue.from_settings(configured)
    ingestor = Ingestor(configured, store, queue)
    objects = []
    try:
        ingestor.thread.stop(5) if ingestor.thread else None  # nothing is indexed meanwhile
        for n in range(2):
            ds = examples.ct
            ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.78.{n}"
            buffer = BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            objects.append(buffer.getvalue())
            counts = _count_flushes(monkeypatch)
            assert ingestor.ingest(_received(ds, data=objects[-1])).status == 0
            monkeypatch.undo()
            new_segment = 1 if n == 0 else 0
            assert counts == {"fsync": new_segment, "fdatasync": 1, "syncfs": 0}, counts
        assert list(store.list()) == [], "the answer did not wait for the store"
    finally:
        ingestor.close(timeout=1)
    assert ingestor.journal is not None
    for held in ingestor.journal._segments.values():
        os.close(held.fd)  # as if the process had died: its locks go
    [segment] = configured.journal_dir.glob("*.journal")
    journaled = read_segment(segment)
    assert len(journaled) == 2
    # the dead process was writing the first object into the store when it was killed
    key = Path(str(journaled[0].instance["object_key"]))
    folder = store.root / key.parent
    folder.mkdir(parents=True)
    stale, fresh = folder / f".incoming-1-2-{key.name}", folder / f".incoming-3-4-{key.name}"
    for staged in (stale, fresh):
        staged.write_bytes(b"partial")
    os.utime(stale, (1.0, 1.0))

    restarted = Ingestor(configured, store, queue)  # replays the journal
    try:
        assert restarted.flush(30)
    finally:
        restarted.close()
    with db.read_session(db.get_engine(configured.resolved_database_url)) as session:
        rows = sorted(session.exec(select(Instance)).all(), key=lambda r: r.sop_instance_uid)
    assert [store.get_bytes(row.object_key) for row in rows] == objects
    assert [row.sha256 for row in rows] == [hashlib.sha256(o).hexdigest() for o in objects]
    assert list(configured.journal_dir.glob("*.journal")) == []
    assert not stale.exists(), "a dead writer's temp file was left behind"
    assert fresh.exists(), "a temp file being written (by a live process) was removed"
