"""A small adapter over pynetdicom's receive path (not a fork): what it costs, and the fix.

Profiling a 7 MB C-STORE in 128 KiB PDUs showed two costs on our side of the socket:

- ``AssociationSocket.recv`` reads a PDU 4 KiB at a time and appends each piece to a
  ``bytearray`` (32 ``recv`` calls, 32 reallocations per 128 KiB PDU). :func:`recv_exact`
  reads into one preallocated buffer with ``recv_into``: one call per socket-buffer's worth.
- The ingest hashed every object in a second pass over the spooled file. pynetdicom writes
  each received fragment to the spool file it opens with ``NamedTemporaryFile``;
  :class:`HashingSpool` wraps that file and hashes the bytes as they are written, so the
  sha256 is ready when the C-STORE handler runs (the ingestor checks the size and hashes the
  file itself if anything was written around the wrapper).

- Every UID of an A-ASSOCIATE-RQ (each proposed context's abstract and transfer syntaxes,
  ~500 with dcmtk's defaults) is made into a pydicom ``UID`` and validated by regex
  (``pynetdicom.utils.set_uid``), ~4 ms per association, for the same few hundred UIDs every
  time. :func:`set_uid` answers a ``str``, ``bytes`` or ``UID`` it has seen with the ``UID``
  made then (an LRU of 4,096; a value that fails validation is never cached and fails again).

:func:`install` patches these into pynetdicom (3.x) once per process; the SCP calls it.
Upstream: pynetdicom reads 4 KiB per ``recv`` (``transport.AssociationSocket.recv``); a larger
read is the change we would propose.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
from typing import IO, Any

from pydicom.uid import UID
from pynetdicom.utils import set_uid as _original_set_uid

_installed = False


def recv_exact(self: Any, nr_bytes: int) -> bytearray:
    """``AssociationSocket.recv``: ``nr_bytes`` bytes, or fewer if the peer closed."""
    sock = self.socket
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    got = 0
    try:
        while got < nr_bytes:
            count = sock.recv_into(view[got:], nr_bytes - got)
            if not count:  # connection broken: what was read, as pynetdicom returns it
                return buffer[:got]
            got += count
    finally:
        view.release()
    return buffer


class HashingSpool:
    """The spool file pynetdicom writes a received data set to, hashing what is written."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()
        self.size = 0

    @property
    def name(self) -> str:
        return str(self._raw.name)

    @property
    def file(self) -> IO[bytes]:  # pynetdicom calls ``.file.flush()`` after each fragment
        raw_file: IO[bytes] = self._raw.file
        return raw_file

    def write(self, data: bytes | bytearray | memoryview) -> int:
        written = int(self._raw.write(data))
        self._sha.update(data)
        self.size += len(data)
        return written

    def tell(self) -> int:
        return int(self._raw.tell())

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)

    def digest(self) -> tuple[int, str]:
        """Bytes written so far and their sha256."""
        self._raw.flush()
        return self.size, self._sha.hexdigest()


def hashing_temporary_file(*args: Any, **kwargs: Any) -> HashingSpool:
    """Stands in for ``NamedTemporaryFile`` in pynetdicom's DIMSE decoder."""
    return HashingSpool(tempfile.NamedTemporaryFile(*args, **kwargs))


def spool_digest(request: Any) -> tuple[int, str] | None:
    """The (size, sha256) of a C-STORE request's spool file, when it was hashed on receipt."""
    spool = getattr(request, "_dataset_file", None)
    return spool.digest() if isinstance(spool, HashingSpool) else None


_CACHED_TYPES = (str, bytes, UID)


@functools.lru_cache(maxsize=4096)
def _uid(value: str | bytes, name: str, allow_empty: bool, allow_none: bool, validate: bool) -> Any:
    return _original_set_uid(value, name, allow_empty, allow_none, validate)


def set_uid(
    value: Any,
    name: str,
    allow_empty: bool = True,
    allow_none: bool = True,
    validate: bool = True,
) -> Any:
    """``pynetdicom.utils.set_uid``, remembering what it made of a ``str``, ``bytes`` or
    ``UID`` (a pydicom ``UID`` is a ``str`` with no state of its own: an equal one is made)."""
    if type(value) in _CACHED_TYPES:  # exactly these: immutable and hashable
        return _uid(value, name, allow_empty, allow_none, validate)
    return _original_set_uid(value, name, allow_empty, allow_none, validate)


def install() -> None:
    """Patch pynetdicom's socket reads, spool files and UID making (idempotent)."""
    global _installed
    if _installed:
        return
    from pynetdicom import (
        dimse_messages,
        dimse_primitives,
        pdu_items,
        pdu_primitives,
        presentation,
        transport,
    )

    transport.AssociationSocket.recv = recv_exact  # type: ignore[method-assign]
    dimse_messages.NamedTemporaryFile = hashing_temporary_file  # type: ignore[attr-defined,assignment]
    for module in (pdu_items, pdu_primitives, presentation, dimse_primitives):
        module.set_uid = set_uid  # type: ignore[attr-defined]
    _installed = True
