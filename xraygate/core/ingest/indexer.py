"""Committing index records: patient/study/series/instance rows and ``infer`` jobs, in batches.

:class:`BatchIndexer` writes a batch in one transaction with SQLAlchemy Core statements (no ORM
objects): each table gets one ``INSERT .. ON CONFLICT DO NOTHING``, and the primary
keys of patients, studies and series already seen are cached (only after their transaction
committed), so a series of 500 instances upserts its parents once. The statements are
executed with a list of rows (SQLAlchemy's "insertmanyvalues": multi-row VALUES under the hood,
one compiled statement whatever the batch size). Indexing is idempotent: a
record indexed twice adds nothing; a record with new content for a known SOP Instance UID
repoints the instance and enqueues its new ``infer`` job (keyed by content hash).

:class:`IndexerThread` is the group commit: receivers hand it journaled records and it commits
whatever has gathered since its last commit, across every association of the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from xraygate.core.db import is_sqlite, write_lock
from xraygate.core.errors import DatabaseError, StorageError
from xraygate.core.ingest.header import IndexRecord
from xraygate.core.ingest.journal import Entry
from xraygate.core.jobs import InferPayload
from xraygate.core.models import Instance, Patient, Series, Study, utcnow
from xraygate.core.queue import JobQueue

log = logging.getLogger(__name__)

_CACHE_LIMIT = 50_000


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


class BatchIndexer:
    """Commits batches of :class:`IndexRecord` to the index and the work queue."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.engine = queue.engine
        self._insert = sqlite.insert if is_sqlite(self.engine) else postgresql.insert
        self._ids: dict[str, dict[str, int]] = {"patients": {}, "studies": {}, "series": {}}

    def index(self, records: Iterable[IndexRecord]) -> int:
        """Commit the records in one transaction; the number of instances new or repointed
        (each got an ``infer`` job). Raises :class:`DatabaseError`."""
        latest: dict[str, IndexRecord] = {}
        for record in records:  # the same instance twice in a batch: the later one wins
            latest.pop(record.sop_instance_uid, None)
            latest[record.sop_instance_uid] = record
        batch = list(latest.values())
        if not batch:
            return 0
        learned: dict[str, dict[str, int]] = {name: {} for name in self._ids}
        try:
            with write_lock(self.engine), self.engine.begin() as conn:
                changed = self._index(conn, batch, learned)
        except SQLAlchemyError as exc:
            self._forget()  # a cached row may have been deleted: look everything up again
            raise DatabaseError(f"index write failed: {type(exc).__name__}") from exc
        for name, ids in learned.items():
            self._ids[name].update(ids)
        return changed

    def _forget(self) -> None:
        for ids in self._ids.values():
            ids.clear()

    def _index(
        self, conn: Connection, batch: list[IndexRecord], learned: dict[str, dict[str, int]]
    ) -> int:
        now = utcnow()
        patients = self._ids_of(
            conn,
            Patient,
            "patient_key",
            [{**r.patient, "created_at": now} for r in batch],
            learned,
        )
        studies = self._ids_of(
            conn,
            Study,
            "study_instance_uid",
            [
                {
                    **r.study,
                    "patient_pk": patients[r.patient["patient_key"]],
                    "created_at": now,
                    "updated_at": now,
                }
                for r in batch
            ],
            learned,
        )
        series = self._ids_of(
            conn,
            Series,
            "series_instance_uid",
            [{**r.series, "study_pk": studies[r.study_uid]} for r in batch],
            learned,
        )
        rows = {
            r.sop_instance_uid: {
                **r.instance,
                "series_pk": series[r.series["series_instance_uid"]],
                "study_pk": studies[r.study_uid],
            }
            for r in batch
        }
        instances = _table(Instance)
        stmt = (
            self._insert(instances)
            .on_conflict_do_nothing(index_elements=["sop_instance_uid"])
            .returning(instances.c.sop_instance_uid)
        )
        inserted = {str(row[0]) for row in conn.execute(stmt, list(rows.values()))}
        changed = [r for r in batch if r.sop_instance_uid in inserted]
        known = [uid for uid in rows if uid not in inserted]
        if known:
            current = conn.execute(
                select(instances.c.sop_instance_uid, instances.c.sha256)
                .where(instances.c.sop_instance_uid.in_(known))
                .with_for_update()
            ).all()
            for uid, sha in current:
                if sha != rows[uid]["sha256"]:  # new content for a known instance: repoint
                    conn.execute(
                        update(instances)
                        .where(instances.c.sop_instance_uid == uid)
                        .values(**rows[uid])
                    )
                    changed.append(latest_of(batch, uid))
        self.queue.put_many(
            conn, [(InferPayload(r.sop_instance_uid, r.sha256), r.study_uid) for r in changed]
        )
        return len(changed)

    def _ids_of(
        self,
        conn: Connection,
        model: Any,
        unique: str,
        values: list[dict[str, Any]],
        learned: dict[str, dict[str, int]],
    ) -> dict[str, int]:
        """Primary keys by unique key, inserting the rows not cached (once per key)."""
        table = _table(model)
        cache = self._ids[table.name]
        ids = {v[unique]: cache[v[unique]] for v in values if v[unique] in cache}
        missing: dict[str, dict[str, Any]] = {}
        for value in values:
            if value[unique] not in ids:
                missing.setdefault(value[unique], value)
        if missing:
            conn.execute(
                self._insert(table).on_conflict_do_nothing(index_elements=[unique]),
                list(missing.values()),
            )
            column = table.c[unique]
            found = conn.execute(select(column, table.c.id).where(column.in_(list(missing))))
            new = {str(key): int(pk) for key, pk in found}
            ids.update(new)
            if len(cache) + len(new) > _CACHE_LIMIT:
                cache.clear()
            learned[table.name].update(new)
        return ids


def latest_of(batch: list[IndexRecord], uid: str) -> IndexRecord:
    return next(r for r in batch if r.sop_instance_uid == uid)


class IndexerThread:
    """Commits journaled records in batches (group commit) and notes them done in the journal.

    While the database fails, batches are retried with a growing pause and :attr:`failing`
    is set: receivers then refuse new objects with 0xA702 instead of piling up a backlog.

    A batch waits up to ``linger`` seconds to fill (not while someone flushes): with one busy
    association a commit per instance would add a flush beside each of the receiver's own.
    ``publish`` (the ingestor's) puts the objects journaled with a batch's records into the
    store before the batch is indexed; a StorageError is retried like a database error.
    """

    def __init__(
        self,
        indexer: BatchIndexer,
        on_done: Callable[[list[Entry]], None],
        *,
        batch_size: int = 256,
        retry_seconds: float = 0.2,
        retry_max_seconds: float = 5.0,
        linger: float = 0.0,
        publish: Callable[[list[Entry]], None] | None = None,
    ) -> None:
        self.indexer = indexer
        self.linger = linger
        self.publish = publish
        self._flushers = 0  # threads in flush(): no lingering for them
        self.on_done = on_done
        self.batch_size = batch_size
        self.retry_seconds = retry_seconds
        self.retry_max_seconds = retry_max_seconds
        self.failing = False
        self._pending: list[Entry] = []
        self._stuck: list[Entry] = []  # failed alone with an unexpected error (a bug)
        self._cond = threading.Condition()
        self._stopping = False
        self._submitted = 0
        self._finished = 0
        self._blob_bytes = 0  # objects journaled with pending records, not yet in the store
        self._thread = threading.Thread(target=self._run, name="ingest-indexer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, entries: list[Entry]) -> None:
        with self._cond:
            self._pending.extend(entries)
            self._submitted += len(entries)
            self._blob_bytes += _blob_bytes(entries)
            self._cond.notify_all()

    @property
    def backlog(self) -> int:
        with self._cond:
            return self._submitted - self._finished

    @property
    def blob_bytes(self) -> int:
        """Bytes of objects held in memory until the indexer puts them in the store."""
        with self._cond:
            return self._blob_bytes

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far was committed (False on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._flushers += 1
            self._cond.notify_all()
            try:
                while self._finished < target:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._flushers -= 1

    def stop(self, timeout: float) -> bool:
        """Commit what is pending (for up to ``timeout`` seconds), then end the thread."""
        flushed = self.flush(timeout) if self._thread.is_alive() else False
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=max(1.0, timeout))
        return flushed

    def _take(self) -> list[Entry] | None:
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait(1.0)
            linger_until = time.monotonic() + self.linger
            while len(self._pending) < self.batch_size and not (self._stopping or self._flushers):
                left = linger_until - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            return batch

    def _run(self) -> None:
        pause = self.retry_seconds
        while (batch := self._take()) is not None:
            try:
                self._commit(batch)
            except _Retry as retry:
                self.failing = True
                log.warning("indexer: %s; retrying in %.1f s", retry.cause, pause)
                with self._cond:
                    self._pending[:0] = retry.remaining
                    if self._stopping:
                        return
                    self._cond.wait(pause)
                pause = min(pause * 2, self.retry_max_seconds)
                continue
            pause = self.retry_seconds
            self.failing = False

    def _commit(self, batch: list[Entry]) -> None:
        if self.publish is not None:
            held = _blob_bytes(batch)
            try:
                self.publish(batch)  # the objects journaled with their records, into the store
            except StorageError as exc:
                raise _Retry(batch, exc) from exc
            finally:
                with self._cond:
                    self._blob_bytes -= held - _blob_bytes(batch)
        try:
            self.indexer.index(e.record for e in batch)
        except DatabaseError as exc:
            raise _Retry(batch, exc) from exc
        except Exception as exc:  # a bug: isolate the record that causes it
            if len(batch) > 1:
                for i, entry in enumerate(batch):
                    try:
                        self._commit([entry])
                    except _Retry as retry:
                        raise _Retry(batch[i:], retry.cause) from exc
                return
            seq = batch[0].record.seq
            log.error("indexer: record %d cannot be indexed: %s", seq, type(exc).__name__)
            with self._cond:
                self._stuck.extend(batch)  # stays in the journal: replayed after a restart
                self._finished += 1
                self._cond.notify_all()
            return
        self.on_done(batch)
        with self._cond:
            self._finished += len(batch)
            self._cond.notify_all()


def _blob_bytes(entries: list[Entry]) -> int:
    return sum(len(e.blob) for e in entries if e.blob is not None)


class _Retry(Exception):
    """The database failed: ``remaining`` go back to the front of the queue."""

    def __init__(self, remaining: list[Entry], cause: DatabaseError | StorageError) -> None:
        super().__init__(str(cause))
        self.remaining = remaining
        self.cause = cause
