"""The ingest journal: one fsynced line per acknowledged object, until the indexer commits it.

A receiver acknowledges an object once its bytes are durable in the object store and its
:class:`~xraygate.core.ingest.header.IndexRecord` is durable here. The indexer commits records
to the database in batches and then appends a ``done`` line (not fsynced: replaying a record
twice is harmless, the index is idempotent). A segment whose records are all done is deleted.

Each process appends to its own segment files (``<pid>-<ns>.journal``) and holds an exclusive
``flock`` on each while it lives. A killed process's locks go with it, so at start-up any
process sharing the directory takes over the unlocked segments and replays their records that
have no ``done`` line, in the order they were written. A torn last line (the process died while
writing it) belongs to an object that was never acknowledged and is skipped.

Appends are group-committed: threads that write while another flushes share the next flush.
With ``syncfs`` (``XRAYGATE_INGEST_SYNC=syncfs``, Linux) that flush is one ``syncfs(2)`` per
filesystem involved, which makes the journal lines, the objects renamed into the store and their
directories durable at once (measured here: 3 fsyncs per small object cost 2-3x one syncfs);
otherwise each directory is fsynced and the journal fdatasynced, the objects having been fsynced
by the store.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from xraygate.core.ingest.header import IndexRecord
from xraygate.core.storage import fsync_dir, write_all

log = logging.getLogger(__name__)

SUFFIX = ".journal"


@dataclass(eq=False)
class Segment:
    """One journal file this process holds (locked) and the records in it not yet indexed."""

    path: Path
    fd: int
    size: int = 0
    pending: set[int] = field(default_factory=set)
    sealed: bool = False  # no more appends: deleted once nothing is pending


@dataclass(eq=False)
class Entry:
    """A journaled record and where it was written; ``blob``: the object itself, journaled
    with its record, until the indexer has put it in the store (then None)."""

    segment: Segment
    record: IndexRecord
    blob: bytes | None = None
    recovered: bool = False  # taken over from a process that is gone


class Journal:
    """This process's journal segments in ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        rotate_bytes: int = 8 * 2**20,
        sync: bool = True,
        syncfs: bool = False,
    ):
        self.directory = directory
        self.rotate_bytes = rotate_bytes
        self.sync = sync
        self.syncfs = syncfs and sync and syncfs_available()
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._segments: dict[Path, Segment] = {}
        self._active: Segment | None = None
        self._seq = 0
        self._written = 0  # appends so far
        self._synced = 0  # appends known durable
        self._dirty_dirs: set[Path] = set()  # to fsync with the next group commit

    # -- appending ------------------------------------------------------------------------
    def append(
        self, record: IndexRecord, sync_dirs: tuple[Path, ...] = (), blob: bytes | None = None
    ) -> Entry:
        """Write ``record`` and return once it is durable (raises OSError when it is not).

        ``sync_dirs``: directories whose entries (an object's rename) must be durable with the
        record; the group commit fsyncs each once for every append it covers.
        ``blob``: the object's bytes, written right after the record's line (its length in the
        line), for an object not yet in the store (see :class:`Entry`)."""
        with self._lock:
            self._dirty_dirs.update(sync_dirs)
            segment = self._writable()
            self._seq += 1
            record.seq = self._seq
            head = record.to_json()
            if blob is not None:
                head["blob"] = len(blob)
            parts = [(json.dumps(head, separators=(",", ":")) + "\n").encode()]
            if blob is not None:
                parts += [blob, b"\n"]
            try:
                written = _writev_all(segment.fd, parts)
            except OSError:
                segment.sealed = True  # a partial line may be there: never append after it
                self._active = None
                raise
            segment.size += written
            segment.pending.add(record.seq)
            self._written += 1
            ticket = self._written
        if self.sync:
            self._sync_through(ticket)
        return Entry(segment, record, blob)

    def _writable(self) -> Segment:
        active = self._active
        if active is not None and active.size < self.rotate_bytes:
            return active
        if active is not None:
            self._fsync(active.fd)  # what was written to it is durable before we move on
            active.sealed = True
            self._drop_if_finished(active)
        path = self.directory / f"{os.getpid()}-{time.time_ns()}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if self.sync:  # the segment's own entry (a group commit may be one fdatasync only)
            fsync_dir(self.directory)
        self._active = Segment(path, fd)
        self._segments[path] = self._active
        return self._active

    def _sync_through(self, ticket: int) -> None:
        """Group commit: one fsync covers every append made before it started."""
        with self._sync_lock:
            if self._synced >= ticket:
                return
            with self._lock:
                target, active = self._written, self._active
                dirs, self._dirty_dirs = self._dirty_dirs, set()
            try:
                flushed = False  # whether the journal's appends were flushed too
                if dirs:  # a syncfs of the journal's filesystem covers its appends
                    flushed = self.make_durable(dirs | ({self.directory} if self.syncfs else set()))
            except OSError:
                with self._lock:
                    self._dirty_dirs.update(dirs)  # the next group commit tries them again
                raise
            if active is not None and not flushed:
                self._fsync(active.fd)
            self._synced = max(self._synced, target)

    def make_durable(self, directories: set[Path]) -> bool:
        """Make the entries of ``directories`` durable (renames into them): with syncfs, one
        ``syncfs`` per filesystem, which flushes the files' bytes too (True); else one fsync
        per directory, the files having been fsynced by whoever wrote them (False)."""
        if self.syncfs:
            for directory in _one_per_filesystem(directories):
                _syncfs(directory)
            return True
        for directory in sorted(directories):
            fsync_dir(directory)
        return False

    def _fsync(self, fd: int) -> None:
        if self.sync:
            os.fdatasync(fd)

    # -- indexed ----------------------------------------------------------------------------
    def done(self, entries: list[Entry]) -> None:
        """The records were committed to the index: note it, delete finished segments."""
        by_segment: dict[Segment, list[int]] = {}
        for entry in entries:
            by_segment.setdefault(entry.segment, []).append(entry.record.seq)
        with self._lock:
            for segment, seqs in by_segment.items():
                segment.pending.difference_update(seqs)
                if segment.path not in self._segments:
                    continue
                if not self._drop_if_finished(segment):
                    line = json.dumps({"done": seqs}, separators=(",", ":")) + "\n"
                    try:
                        write_all(segment.fd, line.encode())
                    except OSError:
                        log.warning("journal: cannot note indexed records (replayed on restart)")

    def _drop_if_finished(self, segment: Segment) -> bool:
        if not segment.sealed or segment.pending:
            return False
        segment.path.unlink(missing_ok=True)
        os.close(segment.fd)
        del self._segments[segment.path]
        return True

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(len(s.pending) for s in self._segments.values())

    # -- start-up recovery ----------------------------------------------------------------
    def recover(self) -> list[Entry]:
        """Take over the segments of processes that are gone; their records not yet indexed,
        oldest first."""
        entries: list[Entry] = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}"), key=_written_at):
            with self._lock:
                if path in self._segments:
                    continue
                taken = self._take_over(path)
            if taken is not None:
                entries.extend(taken)
        if entries:
            log.warning("journal: replaying %d acknowledged objects not yet indexed", len(entries))
        return entries

    def _take_over(self, path: Path) -> list[Entry] | None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a live process's segment
            return None
        if not path.exists():  # its owner finished it between our glob and our lock
            os.close(fd)
            return None
        records, end = read_records(path)
        if end < path.stat().st_size:
            os.ftruncate(fd, end)  # a torn last record: later ``done`` lines follow whole ones
        segment = Segment(path, fd, size=end, sealed=True)
        segment.pending = {r.seq for r, _blob in records}
        self._segments[path] = segment
        if not records:
            self._drop_if_finished(segment)
            return []
        return [Entry(segment, record, blob, recovered=True) for record, blob in records]

    def close(self) -> None:
        """Seal the active segment; delete it when everything in it was indexed."""
        with self._lock:
            if self._active is not None:
                self._active.sealed = True
                self._active = None
            for segment in list(self._segments.values()):
                self._drop_if_finished(segment)


def read_segment(path: Path) -> list[IndexRecord]:
    """The records in a segment that have no ``done`` line, in the order written."""
    return [record for record, _blob in read_records(path)[0]]


def read_records(path: Path) -> tuple[list[tuple[IndexRecord, bytes | None]], int]:
    """The records without a ``done`` line, with their objects (if journaled), in the order
    written; and where the whole records end. Each record is a JSON line, followed by its
    object's bytes and a newline when the line says ``"blob": <length>``. A torn last record
    (the process died while writing it) was never acknowledged and is left out."""
    raw = path.read_bytes()
    records: dict[int, tuple[IndexRecord, bytes | None]] = {}
    done: set[int] = set()
    pos = end = 0
    while (newline := raw.find(b"\n", pos)) >= 0:
        try:
            data = json.loads(raw[pos:newline])
        except ValueError:
            break  # torn: appends stop at a failed write, so nothing whole follows
        pos = newline + 1
        blob: bytes | None = None
        if isinstance(data, dict) and "blob" in data:
            length = int(data["blob"])
            if raw[pos + length : pos + length + 1] != b"\n":
                break  # its object was not written whole
            blob, pos = raw[pos : pos + length], pos + length + 1
        end = pos
        try:
            if "done" in data:
                done.update(int(seq) for seq in data["done"])
            else:
                record = IndexRecord.from_json(data)
                records[record.seq] = (record, blob)
        except (ValueError, KeyError, TypeError):
            continue  # not a record of ours: skipped
    return [records[seq] for seq in sorted(records) if seq not in done], end


def _written_at(path: Path) -> int:
    try:
        return int(path.stem.rsplit("-", 1)[-1])
    except ValueError:
        return 0


def _writev_all(fd: int, parts: list[bytes]) -> int:
    """Write ``parts`` in order (one ``writev`` unless it comes back short); the byte count."""
    total = sum(len(p) for p in parts)
    written = os.writev(fd, parts)
    if written < total:
        write_all(fd, b"".join(parts)[written:])
    return total


_libc: ctypes.CDLL | None = None


def syncfs_available() -> bool:
    """Whether this C library has ``syncfs`` (Linux)."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return False
    return hasattr(_libc, "syncfs")


def _syncfs(directory: Path) -> None:
    """Flush the filesystem holding ``directory`` (data and metadata); raises OSError."""
    assert _libc is not None
    fd = os.open(directory, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(directory))
    finally:
        os.close(fd)


def _one_per_filesystem(directories: set[Path]) -> list[Path]:
    """One directory for each filesystem the given ones are on."""
    chosen: dict[int, Path] = {}
    for directory in sorted(directories):
        chosen.setdefault(directory.stat().st_dev, directory)
    return list(chosen.values())
