"""One received object -> object store + journal (+ index rows and an ``infer`` job).

The order makes acknowledgement safe. The header is parsed once (from the received bytes or
the spool file) and checked; the object is stored (local: fsync and atomic rename; S3: the PUT
returned), then its index record is appended to the fsynced journal, and only then does the
receiver answer success. An object received in memory, for a local store, is instead appended
to the journal with its record and written into the store by the indexer thread before it is
indexed (:meth:`Ingestor._publish`). The
:class:`~xraygate.core.ingest.indexer.IndexerThread` commits the rows and jobs in batches; a
crash before that leaves a journal record (and object) that the next start replays. A crash
before the journal record leaves at most an unreferenced object and an unacknowledged request,
which the sender repeats. With ``ingest_journal`` off the rows are committed before answering.

Receivers (the DICOM SCP, DICOMweb STOW-RS) call :meth:`Ingestor.ingest` with a
:class:`Received`; it never raises and answers a :class:`Status`.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset

from xraygate.core import metrics
from xraygate.core.config import Settings
from xraygate.core.errors import DatabaseError, IngestError, StorageError, StorageFull
from xraygate.core.ingest import header
from xraygate.core.ingest.header import Received
from xraygate.core.ingest.indexer import BatchIndexer, IndexerThread
from xraygate.core.ingest.journal import Entry, Journal
from xraygate.core.ingest.status import Status
from xraygate.core.logging import correlation_id
from xraygate.core.queue import JobQueue
from xraygate.core.storage import LocalStore, ObjectStore, file_digest

log = logging.getLogger(__name__)


#: Most bytes of objects journaled with their records and held in memory until the indexer
#: has put them in the store (per process).
MAX_JOURNALED_BYTES = 256 * 2**20
#: A temp file of an object not written to for this long belongs to a process that is gone.
STAGED_IDLE_SECONDS = 60.0


@dataclass(frozen=True)
class IngestResult:
    status: Status
    comment: str = ""


class Ingestor:
    """Stores received objects and has them indexed; safe to call from many threads.

    In journal mode, construction replays the journal segments left by killed processes and
    starts the indexer thread; :meth:`close` commits what is pending and stops it.
    """

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        queue: JobQueue,
        *,
        journal: bool | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.indexer = BatchIndexer(queue)
        self.journal: Journal | None = None
        self.thread: IndexerThread | None = None
        if settings.ingest_journal if journal is None else journal:
            self.journal = Journal(settings.journal_dir, syncfs=settings.ingest_sync == "syncfs")
            self.thread = IndexerThread(
                self.indexer,
                self.journal.done,
                batch_size=settings.ingest_batch_size,
                linger=settings.ingest_batch_linger_seconds,
                publish=self._publish,
            )
            self.thread.submit(self.journal.recover())
            self.thread.start()

    # -- the public API -------------------------------------------------------------------
    def ingest(self, received: Received) -> IngestResult:
        """Store one object and have it indexed; failures become a refusing status."""
        try:
            self._ingest(received)
        except IngestError as exc:
            return self._refused(Status(exc.status), exc.comment)
        except Exception as exc:  # a bug must not kill the association: refuse, log the type
            where = traceback.extract_tb(exc.__traceback__)[-1]
            # type and place only: exception messages may quote data set values (PHI)
            log.error(
                "ingest failed: %s at %s:%s", type(exc).__name__, where.filename, where.lineno
            )
            return self._refused(Status.PROCESSING_FAILURE, "internal error")
        return IngestResult(Status.SUCCESS)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every object acknowledged so far is indexed (False on timeout)."""
        return self.thread.flush(timeout) if self.thread is not None else True

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is journaled (up to ``timeout`` seconds) and stop the indexer."""
        if self.thread is not None:
            self.thread.stop(timeout)
        if self.journal is not None:
            self.journal.close()

    # -- the steps ------------------------------------------------------------------------
    @staticmethod
    def _refused(status: Status, comment: str) -> IngestResult:
        metrics.INSTANCES_REFUSED.labels(status=f"0x{status:04X}").inc()
        log.warning("ingest refused with 0x%04X: %s", status, comment)
        return IngestResult(status, comment=comment)

    def _ingest(self, received: Received) -> None:
        self._check_space()
        self._check_index()
        ds, size, sha = self._parse(received)
        key = header.object_key(ds, sha)
        record = header.index_record(ds, received, key, size, sha)
        if self._journals_objects(received):
            self._index(record, (), received.data)  # the indexer stores it (see _publish)
        else:
            self._index(record, self._store(key, received, (size, sha)))
        metrics.INSTANCES_RECEIVED.labels(sop_class=received.sop_class_uid).inc()
        metrics.BYTES_RECEIVED.inc(size)
        if log.isEnabledFor(logging.INFO):  # the id is a hash: not made for nothing
            log.info("[%s] instance stored (%d bytes)", correlation_id(record.study_uid), size)

    def _parse(self, received: Received) -> tuple[Dataset, int, str]:
        """The checked header and the object's size and sha256 (hashed while it was received
        when the receiver did so)."""
        limit = self.settings.max_image_pixels
        data, path = received.data, received.path
        if data is not None:
            ds, size = header.read_header_bytes(data, received.transfer_syntax_uid), len(data)
        elif path is not None and path.is_file():
            ds, size = header.read_header(path, limit), path.stat().st_size
        else:
            raise IngestError(Status.PROCESSING_FAILURE, "no spooled data set")
        header.validate(ds, received, limit)
        if received.sha256 is not None and received.size == size:
            return ds, size, received.sha256
        if data is not None:
            return ds, size, hashlib.sha256(data).hexdigest()
        assert path is not None
        return ds, *file_digest(path)

    def _journals_objects(self, received: Received) -> bool:
        """An object received in memory, for a local store, is made durable in the journal
        with its record (one append and one ``fdatasync`` per group commit, instead of a
        file created and renamed in the store and a ``syncfs``); the indexer thread writes
        it into the store before it indexes it (:meth:`_publish`)."""
        if received.data is None or self.thread is None or not isinstance(self.store, LocalStore):
            return False
        # While the indexer is behind, objects go to the store at once: memory stays bounded.
        return self.thread.blob_bytes + len(received.data) <= MAX_JOURNALED_BYTES

    def _publish(self, entries: list[Entry]) -> None:
        """Before a batch is indexed: put the objects journaled with its records into the
        store and make them durable (one flush for the batch). Raises StorageError."""
        journaled = [e for e in entries if e.blob is not None]
        if not journaled:
            return
        assert isinstance(self.store, LocalStore) and self.journal is not None
        whole = not self.journal.syncfs
        directories: set[Path] = set()
        for entry in journaled:
            assert entry.blob is not None
            key = str(entry.record.instance["object_key"])
            digest = (int(entry.record.instance["size"]), entry.record.sha256)
            if entry.recovered:  # its writer may have died mid-write: no temp file left over
                self.store.remove_staged(key, STAGED_IDLE_SECONDS)
            self.store.put_bytes(key, entry.blob, digest=digest, sync_dir=False, sync=whole)
            directories.add(self.store.directory_of(key))
        try:
            self.journal.make_durable(directories)
        except OSError as exc:
            raise StorageError(f"cannot flush the object store: {exc.strerror}") from exc
        for entry in journaled:
            entry.blob = None  # in the store now: the memory goes

    def _store(self, key: str, received: Received, digest: tuple[int, str]) -> tuple[Path, ...]:
        """Put the object in the store; the directories the journal's group commit must make
        durable with its record. A local store's rename is made durable by that commit (one
        directory fsync for every object of a series received meanwhile) instead of per object;
        with syncfs the object's bytes too (one flush per group, see core/ingest/journal.py)."""
        try:
            if isinstance(self.store, LocalStore) and self.journal is not None:
                whole = not self.journal.syncfs
                if received.data is not None:
                    self.store.put_bytes(
                        key, received.data, digest=digest, sync_dir=False, sync=whole
                    )
                else:
                    assert received.path is not None
                    self.store.put_file(
                        key, received.path, move=True, digest=digest, sync_dir=False, sync=whole
                    )
                return (self.store.directory_of(key),)
            if received.data is not None:
                self.store.put_bytes(key, received.data)
            else:
                assert received.path is not None
                self.store.put_file(key, received.path, move=True, digest=digest)
        except StorageFull as exc:
            raise IngestError(Status.OUT_OF_RESOURCES_STORAGE_FULL, "object store is full") from exc
        except StorageError as exc:
            raise IngestError(Status.OUT_OF_RESOURCES, "object store unavailable") from exc
        return ()

    def _index(
        self, record: header.IndexRecord, sync_dirs: tuple[Path, ...], blob: bytes | None = None
    ) -> None:
        if self.journal is None or self.thread is None:
            try:
                self.indexer.index([record])
            except DatabaseError as exc:
                raise IngestError(
                    Status.OUT_OF_RESOURCES_DATABASE, "index database unavailable"
                ) from exc
            return
        try:
            entry = self.journal.append(record, sync_dirs, blob)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                full = Status.OUT_OF_RESOURCES_STORAGE_FULL
                raise IngestError(full, "no space for the ingest journal") from exc
            raise IngestError(Status.OUT_OF_RESOURCES, "ingest journal unavailable") from exc
        self.thread.submit([entry])

    def _check_index(self) -> None:
        """Journal mode: refuse while the index cannot keep up (or is down), so that the
        senders retry later instead of the journal growing without bound."""
        if self.thread is None:
            return
        if self.thread.failing:
            raise IngestError(Status.OUT_OF_RESOURCES_DATABASE, "index database unavailable")
        if self.thread.backlog >= self.settings.ingest_backlog_limit:
            raise IngestError(Status.OUT_OF_RESOURCES_DATABASE, "index database behind")

    def _check_space(self) -> None:
        """Refuse while the store, or the local spool (the only disk with S3), runs low."""
        limit = self.settings.min_free_bytes
        if limit <= 0:
            return
        free = self.store.free_bytes()
        try:
            spool_free = shutil.disk_usage(self.settings.tmp_dir).free
        except OSError:
            spool_free = None
        for value in (free, spool_free):
            if value is not None and value < limit:
                raise IngestError(Status.OUT_OF_RESOURCES_STORAGE_FULL, "not enough free space")
