"""C-STORE served where the bytes arrive: in the association's DUL thread, without pynetdicom's
DIMSE machinery. (Issue 13: a bare pynetdicom SCP answers small instances at a seventh of
dcmtk's pace; profiled, its time goes to the state machine, primitive objects, pydicom encoding
of each response and two thread hand-offs per message, not to the network.)

pynetdicom still does everything but the common case: association negotiation, release, abort,
timers, C-ECHO, and every message the fast path does not take. Once the association is
established (``Sta6``), :class:`GuardedDUL <xraygate.dicom_scp.guard.GuardedDUL>` gives each
P-DATA-TF PDU to :meth:`FastStore.feed` first:

- a C-STORE-RQ with a data set, in an accepted presentation context whose abstract syntax is
  its (storage) SOP class: the data set fragments are kept (File Meta Information first,
  hashed as received) in memory up to ``XRAYGATE_SCP_SPOOL_MEMORY_BYTES``, beyond that (or
  when deflated) in a spool file; on the last fragment the ingest callback answers a status
  and the C-STORE-RSP goes out on the socket;
- anything else (another command, a SOP class outside its context, an undecodable command set):
  the PDVs of that message, and what follows in its PDU, are handed back to pynetdicom as a
  P-DATA-TF PDU, exactly as received; pynetdicom (and the guards) answer it as before;
- a malformed PDV, or a protocol violation inside a fast message (a command fragment before
  the data set's last fragment, another context): :class:`ProtocolViolation`, the DUL aborts
  the association (as pynetdicom does for an undecodable PDU), the data set received so far
  is dropped (never acknowledged: the sender resends).

``XRAYGATE_SCP_FAST_PATH=false`` leaves every message to pynetdicom.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.uid import DeflatedExplicitVRLittleEndian
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from xraygate.core.errors import XraygateError
from xraygate.core.storage import write_all
from xraygate.dicom_scp import dimse_codec as codec
from xraygate.dicom_scp.status import Status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreRequest:
    """A completely received C-STORE: what the ingest callback needs."""

    path: Path | None  # the spool file, or None: the data set is ``data``
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    size: int
    sha256: str
    data: bytes | None = None  # File Meta + data set, when received in memory


#: The ingest callback: (request, the association) -> (status, error comment).
StoreCallback = Callable[[StoreRequest, Any], tuple[int, str]]


class ProtocolViolation(XraygateError):
    """The peer broke the DIMSE message rules mid-message: the association must be aborted."""


class _Spool:
    """Where a data set is received, hashed as it is written: memory while it is at most
    ``memory_limit`` bytes (File Meta included), then a spool file in ``directory`` (a small
    instance is never written twice: the ingest stores it from memory). The file is written
    unbuffered: each fragment (up to a PDU) goes to the kernel in one ``write`` made without
    the GIL, not copied into a Python buffer first."""

    def __init__(self, directory: str | None, meta: bytes, memory_limit: int) -> None:
        self.directory = directory
        self.memory_limit = memory_limit
        self.buffer: bytearray | None = bytearray()
        self.path: Path | None = None
        self.fd = -1
        self.sha = hashlib.sha256()
        self.size = 0
        self.write(meta)

    def write(self, data: bytes | memoryview) -> None:
        if self.buffer is not None and self.size + len(data) > self.memory_limit:
            self._spill()
        if self.fd >= 0:
            write_all(self.fd, data)
        else:
            assert self.buffer is not None
            self.buffer += data
        self.sha.update(data)
        self.size += len(data)

    def _spill(self) -> None:
        """Move what was received so far to a spool file; later fragments go there."""
        self.fd, name = tempfile.mkstemp(suffix=".dcm", dir=self.directory)
        self.path = Path(name)
        buffered, self.buffer = self.buffer, None
        try:
            write_all(self.fd, buffered or b"")
        except OSError:
            self.discard()  # created but unusable: not left behind
            raise

    def finish(self) -> tuple[int, str]:
        self._close()
        return self.size, self.sha.hexdigest()

    @property
    def data(self) -> bytes | None:
        """The data set received in memory (None: it is in the spool file)."""
        return bytes(self.buffer) if self.buffer is not None else None

    def discard(self) -> None:
        self.buffer = None
        with contextlib.suppress(OSError):  # dropped anyway
            self._close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


_storage_classes: dict[str, bool] = {}


def is_storage_class(uid: str) -> bool:
    """Whether pynetdicom serves ``uid`` with its Storage service class (cached)."""
    known = _storage_classes.get(uid)
    if known is None:
        known = _storage_classes[uid] = uid_to_service_class(uid) is StorageServiceClass
    return known


class FastStore:
    """The fast path of one association (used only from its DUL thread, see module doc)."""

    def __init__(
        self,
        assoc: Any,
        on_store: StoreCallback,
        spool_dir: str | None,
        memory_limit: int = 0,
    ) -> None:
        self.assoc = assoc
        self.on_store = on_store
        self.spool_dir = spool_dir
        self.memory_limit = memory_limit
        self.enabled = True
        self._command = bytearray()  # the current message's command fragments so far
        self._items: list[tuple[int, int, bytes]] = []  # ... and their PDVs, to hand on
        self._transfer_syntax = ""
        self._context_id = -1
        self._request: codec.Command | None = None  # the fast C-STORE being received
        self._spool: _Spool | None = None
        self._refusal: Status | None = None  # the spool failed: the answer, once all arrived
        self._slow = False  # a message handed to pynetdicom is still arriving

    # -- the DUL's entry point ------------------------------------------------------------
    def feed(self, body: bytes | memoryview) -> list[bytes]:
        """Take one P-DATA-TF body; the PDUs (if any) to hand to pynetdicom instead.
        Raises :class:`ProtocolViolation` (abort the association) on a malformed PDV.
        Nothing of ``body`` is kept after the call (the receiver reuses its buffer)."""
        if not self.enabled:
            return [_pdu(body)]
        handed_back: list[tuple[int, int, bytes]] = []
        try:
            for context_id, control, fragment in codec.pdv_items(body):
                if self._slow or handed_back:  # pynetdicom's message: note where it ends
                    handed_back.append((context_id, control, bytes(fragment)))
                    self._track(control, fragment)
                elif not self._fast_pdv(context_id, control, fragment):
                    handed_back, self._items = self._items, []
        except codec.CodecError as exc:
            self.close()
            raise ProtocolViolation(str(exc)) from exc
        return [codec.pdata_pdu(handed_back)] if handed_back else []

    def close(self) -> None:
        """The connection ended: a data set still being received was never acknowledged."""
        if self._spool is not None:
            self._spool.discard()
            self._spool = None
        self._request = None

    # -- fast messages --------------------------------------------------------------------
    def _fast_pdv(self, context_id: int, control: int, fragment: memoryview) -> bool:
        """One PDV of a message the fast path holds; False: the message goes to pynetdicom
        (its PDVs so far are in ``_items``, ``_slow`` says whether more of it follows)."""
        is_command, last = bool(control & 1), bool(control & 2)
        if self._request is not None:  # receiving a fast C-STORE's data set
            if is_command or context_id != self._context_id:
                raise codec.CodecError("command or context change inside a data set")
            self._spool_write(fragment)
            if last:
                self._answer()
            return True
        self._items.append((context_id, control, bytes(fragment)))
        if not is_command:  # a data set with no command before it: pynetdicom's to judge
            self._command = bytearray()
            self._slow = not last
            return False
        if self._command and context_id != self._context_id:
            raise codec.CodecError("context change inside a command set")
        self._context_id = context_id
        self._command += fragment
        if not last:
            return True
        try:
            command: codec.Command | None = codec.parse_command(self._command)
        except codec.CodecError:  # pynetdicom answers (or aborts) as it always did
            command = None
        self._command = bytearray()
        if command is None or not self._takes(command, context_id):
            self._slow = command is not None and command.has_dataset
            return False
        self._start(command, context_id)
        return True

    def _takes(self, command: codec.Command, context_id: int) -> bool:
        """A C-STORE-RQ the fast path serves: with a data set, in its own storage context."""
        if command.field != codec.C_STORE_RQ or not command.has_dataset:
            return False
        if command.message_id < 0 or not command.sop_instance_uid:
            return False
        context = self.assoc._accepted_cx.get(context_id)
        if context is None or str(context.abstract_syntax) != command.sop_class_uid:
            return False
        return is_storage_class(command.sop_class_uid)

    def _start(self, command: codec.Command, context_id: int) -> None:
        context = self.assoc._accepted_cx[context_id]
        self._transfer_syntax = str(context.transfer_syntax[0])
        meta = codec.file_meta(
            command.sop_class_uid, command.sop_instance_uid, self._transfer_syntax
        )
        self._request = command
        self._items = []
        self._refusal = None
        # A deflated data set is inflated from a file by the ingest: never kept in memory.
        in_memory = (
            0 if self._transfer_syntax == DeflatedExplicitVRLittleEndian else self.memory_limit
        )
        try:
            self._spool = _Spool(self.spool_dir, meta, in_memory)
        except OSError as exc:
            self._spool_failed(exc)

    def _spool_write(self, fragment: memoryview) -> None:
        if self._spool is None:  # the spool failed: the rest of the data set is dropped
            return
        try:
            self._spool.write(fragment)
        except OSError as exc:
            self._spool.discard()
            self._spool = None
            self._spool_failed(exc)

    def _spool_failed(self, exc: OSError) -> None:
        """The local disk refused the data set: it is received to its end and answered with
        a "send again" status instead of aborting the association (pynetdicom's path aborts)."""
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        self._refusal = Status.OUT_OF_RESOURCES_STORAGE_FULL if full else Status.OUT_OF_RESOURCES
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        log.warning("C-STORE refused: cannot spool the data set (%s)", name)

    def _answer(self) -> None:
        """The data set is complete: ingest it and send the C-STORE-RSP."""
        command, spool = self._request, self._spool
        assert command is not None
        self._request = self._spool = None
        if spool is None:  # not spooled (see _spool_failed)
            assert self._refusal is not None  # set by _spool_failed
            self._respond(command, int(self._refusal), "cannot spool the data set: send again")
            return
        try:
            size, sha = spool.finish()
        except OSError as exc:  # closing the spool file failed (an NFS spool reports here)
            spool.discard()
            self._spool_failed(exc)
            assert self._refusal is not None
            self._respond(command, int(self._refusal), "cannot spool the data set: send again")
            return
        request = StoreRequest(
            path=spool.path,
            data=spool.data,
            sop_class_uid=command.sop_class_uid,
            sop_instance_uid=command.sop_instance_uid,
            transfer_syntax_uid=self._transfer_syntax,
            size=size,
            sha256=sha,
        )
        try:
            status, comment = self.on_store(request, self.assoc)
        except Exception as exc:  # the ingest callback never raises; if it did: refuse
            log.error("C-STORE fast path failed: %s", type(exc).__name__)
            status, comment = int(Status.PROCESSING_FAILURE), "internal error"
        finally:
            spool.discard()  # a stored spool file was moved away already
        self._respond(command, status, comment)

    def _respond(self, command: codec.Command, status: int, comment: str) -> None:
        response = codec.store_response(
            command.message_id, command.sop_class_uid, command.sop_instance_uid, status, comment
        )
        peer_max = int(self.assoc.requestor.maximum_length or 0)
        for pdu in codec.command_pdus(self._context_id, response, peer_max):
            self.assoc.dul.socket.send(pdu)
        self.assoc.dul._idle_timer.restart()

    # -- messages handed to pynetdicom ----------------------------------------------------
    def _track(self, control: int, fragment: memoryview) -> None:
        """Follow a message pynetdicom handles to its end, so that the next can be fast."""
        if not control & 1:  # a data set fragment: the message ends with the last one
            self._slow = not control & 2
            return
        self._slow = True
        self._command += fragment
        if control & 2:
            try:
                self._slow = codec.parse_command(self._command).has_dataset
            except codec.CodecError:
                self.enabled = False  # pynetdicom's problem now; stay out of its way
            self._command = bytearray()


def _pdu(body: bytes | memoryview) -> bytes:
    return codec.PDU_HEADER.pack(0x04, 0, len(body)) + bytes(body)
