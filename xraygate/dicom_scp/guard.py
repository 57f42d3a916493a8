"""Adapters around pynetdicom's acceptor for peers that are broken or hostile.

pynetdicom 3.0.4, as an SCP, leaves these to the application:

- **PDU length**: it reads whatever length a PDU header declares (one socket declaring a 4 GB
  PDU makes it buffer as much as the peer sends). :class:`GuardedDUL` reads the 6-byte header
  first and aborts the association (A-ABORT, then close) when a P-DATA-TF PDU is longer than
  the maximum we negotiated, or any other PDU longer than :data:`MAX_CONTROL_PDU`, without
  reading its body. A PDU must also arrive whole within the ARTIM timeout (before the
  association) or the network timeout (after): pynetdicom's accepted sockets have no timeout,
  so a peer sending half a PDU held its thread for ever.
- **A C-STORE outside its presentation context**: a request whose Affected SOP Class UID is not
  the context's abstract syntax (dcmtk sends one for some malformed files) makes pynetdicom
  abort the whole association, so the rest of a batch is never sent. :class:`GuardedAssociation`
  answers that request 0xA900 with a reason and the association goes on; a C-STORE of a SOP
  class pynetdicom has no service class for is answered 0x0122 instead of an abort.
- **Association limits**: pynetdicom counts every accepted TCP connection, also those that
  never send an A-ASSOCIATE-RQ, against ``maximum_associations``, so 16 idle sockets lock every
  modality out. :class:`AssociationLimiter` counts associations once they are requested, in
  total, per calling AE title and per source address; connections that have not sent their
  request are closed by the ARTIM timer (``acse_timeout``) and capped separately by
  :class:`GuardedServer`.
- **Rejections are logged** with the AE titles and the address (never data set values).

:func:`register_retired_storage` makes pynetdicom serve the retired storage SOP classes (the
old Ultrasound and Nuclear Medicine ones, still sent by some PACS) as storage.
"""

from __future__ import annotations

import copy
import logging
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydicom._uid_dict import UID_dictionary
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import register_uid, uid_to_service_class
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from xraygate.core import metrics
from xraygate.dicom_scp.fastpath import FastStore, ProtocolViolation, StoreCallback
from xraygate.dicom_scp.status import Status

log = logging.getLogger(__name__)

#: The longest A-ASSOCIATE-RQ/AC/RJ, A-RELEASE or A-ABORT PDU we read: 128 presentation
#: contexts with many transfer syntaxes each fit in far less.
MAX_CONTROL_PDU = 1 << 20
_P_DATA_TF = 0x04
_PDU_TYPES = frozenset(range(0x01, 0x08))


def pdu_limit(pdu_type: int, negotiated_maximum: int) -> int:
    """The longest body we read for a PDU of ``pdu_type`` (0 = no limit)."""
    if pdu_type == _P_DATA_TF:
        return max(negotiated_maximum, 0)
    return MAX_CONTROL_PDU


class GuardedDUL(DULServiceProvider):
    """pynetdicom's DUL provider, refusing a PDU whose header declares too long a body."""

    _refused_pdu = False
    _fast: FastStore | None = None  # set when the SCP serves C-STOREs on its fast path
    _pdu_buffer: bytearray | None = None  # the fast path's P-DATA-TF bodies are read into it

    def _read_pdu_data(self) -> None:
        sock = cast(Any, self.socket)
        if self._refused_pdu:  # the rest of a refused PDU is never read: close instead
            self.event_queue.put("Evt17")
            return
        deadline = time.monotonic() + self._read_seconds()
        try:
            head = _recv_exact(sock.socket, 6, deadline)
            if len(head) < 6:
                self.event_queue.put("Evt17")  # the peer closed the connection
                return
            pdu_type, _, length = struct.unpack(">BBL", head)
            if pdu_type not in _PDU_TYPES:
                self.event_queue.put("Evt19")  # unrecognised PDU: A-ABORT
                return
            limit = pdu_limit(pdu_type, int(self.assoc.acceptor.maximum_length or 0))
            if limit and length > limit:
                self._refuse(pdu_type, length, limit)
                return
            established = self.state_machine.current_state == "Sta6"  # and not releasing
            fast = self._fast if pdu_type == _P_DATA_TF and established else None
            if fast is not None:
                body = self._read_fast_body(sock.socket, length, limit, deadline)
            else:
                body = _recv_exact(sock.socket, length, deadline)
        except (OSError, TimeoutError):  # closed, or a PDU not sent in time: close
            self.event_queue.put("Evt17")
            return
        if len(body) != length:
            self.event_queue.put("Evt17")
            return
        if fast is not None:
            self._feed_fast(fast, body)
            return
        self._pass_on(head + bytes(body))

    def _read_fast_body(
        self, sock: Any, length: int, limit: int, deadline: float
    ) -> bytes | memoryview:
        """A P-DATA-TF body for the fast path (shorter than ``length``: the peer closed). Within
        the negotiated maximum it is read into one buffer kept for the association (the fast
        path copies what it keeps: no allocation and no joining of pieces per PDU); without a
        maximum, as any other PDU."""
        if not limit:
            return _recv_exact(sock, length, deadline)
        if self._pdu_buffer is None:
            self._pdu_buffer = bytearray(limit)
        body = memoryview(self._pdu_buffer)[:length]
        return body[: _recv_into(sock, body, deadline)]

    def _feed_fast(self, fast: FastStore, body: bytes | memoryview) -> None:
        """A P-DATA-TF PDU to the C-STORE fast path; what it hands back, to pynetdicom."""
        try:
            handed_back = fast.feed(body)
        except ProtocolViolation as exc:
            log.warning("association aborted: %s (from %s)", exc, peer(self.assoc))
            self.event_queue.put("Evt19")  # invalid PDU: the state machine sends A-ABORT
            return
        for raw in handed_back:
            self._pass_on(raw)

    def _pass_on(self, raw: bytes) -> None:
        """A whole PDU to pynetdicom's decoder and state machine."""
        try:
            pdu, event = self._decode_pdu(bytearray(raw))
        except Exception as exc:  # a malformed PDU: A-ABORT, as pynetdicom does
            log.warning("undecodable PDU from %s: %s", peer(self.assoc), type(exc).__name__)
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _read_seconds(self) -> float:
        """How long one PDU may take to arrive: the ARTIM timeout before the association is
        requested, the network timeout after (pynetdicom would wait for ever)."""
        if self.assoc.requestor.primitive is None:
            return float(self.assoc.acse_timeout or 30)
        return float(self.assoc.network_timeout or 60)

    def _refuse(self, pdu_type: int, length: int, limit: int) -> None:
        log.warning(
            "association aborted: PDU type 0x%02X of %d bytes from %s exceeds %d",
            pdu_type,
            length,
            peer(self.assoc),
            limit,
        )
        metrics.ASSOCIATIONS.labels(outcome="pdu_too_long").inc()
        self._refused_pdu = True
        self.event_queue.put("Evt19")  # invalid PDU: the state machine sends A-ABORT


def _recv_into(sock: Any, view: memoryview, deadline: float) -> int:
    """Fill ``view`` from ``sock``: the bytes read (fewer when the peer closes); TimeoutError
    at ``deadline``."""
    got, count = 0, len(view)
    try:
        while got < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("PDU not received in time")
            sock.settimeout(remaining)
            read = sock.recv_into(view[got:])
            if not read:
                break
            got += read
    finally:
        sock.settimeout(None)  # pynetdicom sends on this socket expecting it blocking
    return got


def _recv_exact(sock: Any, count: int, deadline: float) -> bytes:
    """``count`` bytes from ``sock`` (fewer when the peer closes); TimeoutError at ``deadline``
    (a peer sending a PDU header and stalling holds a thread no longer than that). Read in
    pieces of at most 64 KiB: memory follows what arrives, not the length a header declares."""
    data = bytearray()
    while len(data) < count:
        piece = memoryview(bytearray(min(count - len(data), 65536)))
        got = _recv_into(sock, piece, deadline)
        data += piece[:got]
        if got < len(piece):  # the peer closed
            break
    return bytes(data)


def refuse_store(
    assoc: Association, req: C_STORE, context_id: int, status: Status, why: str
) -> None:
    """Answer a C-STORE request with a failure status and drop its spooled data set."""
    spooled = getattr(req, "_dataset_file", None)
    if spooled is not None:
        spooled.close()
        Path(spooled.name).unlink(missing_ok=True)
    metrics.INSTANCES_REFUSED.labels(status=f"0x{status:04X}").inc()
    log.warning("C-STORE from %s refused with 0x%04X: %s", peer(assoc), status, why)
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = req.MessageID
    rsp.Status = int(status)
    rsp.ErrorComment = why[:64]  # type: ignore[assignment]
    try:
        rsp.AffectedSOPClassUID = req.AffectedSOPClassUID
        rsp.AffectedSOPInstanceUID = req.AffectedSOPInstanceUID
    except (TypeError, ValueError):  # UIDs pynetdicom refuses to echo: leave them out
        pass
    assoc.dimse.send_msg(rsp, context_id)


def store_problem(req: C_STORE, abstract_syntax: str) -> tuple[Status, str] | None:
    """Why a C-STORE request cannot be served in a context of ``abstract_syntax``."""
    sop_class = str(req.AffectedSOPClassUID or "")
    if sop_class != abstract_syntax:
        return Status.DATASET_MISMATCH, "SOP Class differs from the presentation context"
    if uid_to_service_class(sop_class) is not StorageServiceClass:
        return Status.SOP_CLASS_NOT_SUPPORTED, "SOP Class is not a storage class"
    return None


class GuardedAssociation(Association):
    """An acceptor association that refuses a bad C-STORE request instead of aborting."""

    def _serve_request(self, msg: Any, context_id: int) -> None:
        context = self._accepted_cx.get(context_id)
        if isinstance(msg, C_STORE) and msg.is_valid_request and context is not None:
            problem = store_problem(msg, str(context.abstract_syntax))
            if problem is not None and not self._sent_release:
                refuse_store(self, msg, context_id, *problem)
                return
        super()._serve_request(msg, context_id)


class GuardedRequestHandler(RequestHandler):
    """Creates :class:`GuardedAssociation` acceptors with a :class:`GuardedDUL` (and the
    C-STORE fast path when the server has a ``fast_store`` callback)."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        # Same state, guarded methods: both are created (not started) by pynetdicom, with
        # timers and socket already wired, so only their class changes.
        assoc.__class__ = GuardedAssociation
        assoc.dul.__class__ = GuardedDUL
        on_store: StoreCallback | None = getattr(self.server, "fast_store", None)
        if on_store is not None:
            memory = int(getattr(self.server, "fast_spool_memory", 0))
            fast = FastStore(assoc, on_store, tempfile.gettempdir(), memory)
            cast(GuardedDUL, assoc.dul)._fast = fast
        return assoc


def close_fast_path(event: Any) -> None:
    """EVT_CONN_CLOSE: delete a data set the fast path was still receiving (never answered)."""
    fast = getattr(event.assoc.dul, "_fast", None)
    if isinstance(fast, FastStore):
        fast.close()


class GuardedServer(ThreadedAssociationServer):
    """Closes a new TCP connection at once while ``max_pending`` others have not sent their
    A-ASSOCIATE-RQ yet (those end after the ARTIM timeout anyway). Its supported contexts are
    copied for each association by :class:`CopiedContexts`."""

    max_pending = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.contexts = CopiedContexts(self.contexts)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        pending = sum(1 for a in self.active_associations if a.requestor.primitive is None)
        if pending >= self.max_pending:
            log.warning(
                "connection from %s closed: %d connections await their association request",
                _address(client_address),
                pending,
            )
            metrics.ASSOCIATIONS.labels(outcome="rejected").inc()
            return False
        return True


class CopiedContexts(list[PresentationContext]):
    """The server's supported presentation contexts. pynetdicom deep-copies them for every
    association it accepts (``RequestHandler._create_association``): ~15 ms of CPU per
    association for the ~120 storage SOP classes x 13 transfer syntaxes we accept, paid by
    every sender that opens an association per study or per image. A context holds immutable
    values and a list of UIDs: a copy of the object with its own list is the same deep copy
    at ~1/30 of the cost (any other kind of value: :func:`copy.deepcopy` as before)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        return [_copy_context(context) for context in self]


def _copy_context(context: PresentationContext) -> PresentationContext:
    new = copy.copy(context)
    attributes = new.__dict__
    for name, value in attributes.items():
        if type(value) is list and all(isinstance(item, str) for item in value):
            attributes[name] = list(value)  # UIDs are immutable: the list is what is shared
        elif not isinstance(value, str | int | None):
            return copy.deepcopy(context)
    return new


@dataclass
class AssociationLimiter:
    """Concurrent association limits, counted from the A-ASSOCIATE-RQ to the connection's
    close: in total, per calling AE title and per source address (a limit <= 0 is off)."""

    total: int
    per_aet: int
    per_address: int
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counted: dict[int, tuple[str, str]] = field(default_factory=dict)

    def handlers(self) -> list[Any]:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_CONN_CLOSE, self.on_closed),
            (evt.EVT_REJECTED, log_rejection),
        ]

    def on_requested(self, event: Any) -> None:
        assoc = event.assoc
        aet, address = calling_aet(assoc), _address_of(assoc)
        with self._lock:
            over = self._over_limit(aet, address)
            if over is None:
                self._counted[id(assoc)] = (aet, address)
        if over is not None:
            metrics.ASSOCIATIONS.labels(outcome="rejected").inc()
            log_rejection(event, over)  # first: the peer may act on the reject at once
            assoc.acse.send_reject(0x02, 0x03, 0x02)  # transient, local limit exceeded
            assoc.kill()

    def _over_limit(self, aet: str, address: str) -> str | None:
        entries = list(self._counted.values())
        if 0 < self.total <= len(entries):
            return f"{self.total} associations open"
        if 0 < self.per_aet <= sum(1 for a, _ in entries if a == aet):
            return f"{self.per_aet} associations open for this calling AE"
        if 0 < self.per_address <= sum(1 for _, addr in entries if addr == address):
            return f"{self.per_address} associations open from this address"
        return None

    def on_closed(self, event: Any) -> None:
        with self._lock:
            self._counted.pop(id(event.assoc), None)

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._counted)


def calling_aet(assoc: Association) -> str:
    primitive = assoc.requestor.primitive
    return str(getattr(primitive, "calling_ae_title", "") or "").strip()


def _called_aet(assoc: Association) -> str:
    primitive = assoc.requestor.primitive
    return str(getattr(primitive, "called_ae_title", "") or "").strip()


def _address_of(assoc: Association) -> str:
    try:
        return str(assoc.requestor.address)
    except ValueError:
        return "unknown"


def _address(client_address: Any) -> str:
    if isinstance(client_address, tuple) and client_address:
        return str(client_address[0])
    return "unknown"


def peer(assoc: Association) -> str:
    """The peer, for logs: AE title (when known) and address."""
    aet = calling_aet(assoc)
    return f"{aet!r}@{_address_of(assoc)}" if aet else _address_of(assoc)


_REJECT_REASONS = {
    (0x01, 0x03): "calling AE title not recognised",
    (0x01, 0x07): "called AE title not recognised",
    (0x01, 0x02): "application context not supported",
    (0x03, 0x02): "local limit exceeded",
    (0x02, 0x02): "protocol version not supported",
}


def log_rejection(event: Any, reason: str | None = None) -> None:
    """EVT_REJECTED: the peer's AE titles, address and the reason (no data set values)."""
    assoc = event.assoc
    if reason is None:
        rj = assoc.acceptor.primitive
        key = (getattr(rj, "result_source", 0), getattr(rj, "diagnostic", 0))
        reason = _REJECT_REASONS.get(key, f"source {key[0]} reason {key[1]}")
    log.warning(
        "association rejected (%s): calling AE %r, called AE %r, from %s",
        reason,
        calling_aet(assoc),
        _called_aet(assoc),
        _address_of(assoc),
    )


#: Every storage SOP class UID starts with this root (PS3.4 B.5, PS3.6 A.1).
STORAGE_ROOT = "1.2.840.10008.5.1.4.1.1."


def retired_storage_classes() -> dict[str, str]:
    """The retired storage SOP classes in pydicom's UID dictionary: UID -> keyword."""
    return {
        uid: keyword
        for uid, (name, kind, _info, retired, keyword) in UID_dictionary.items()
        if kind == "SOP Class" and retired and uid.startswith(STORAGE_ROOT) and keyword
        if "Storage" in name
    }


_registering = threading.Lock()


def register_retired_storage() -> list[str]:
    """Serve the retired storage SOP classes as storage (idempotent); their UIDs."""
    with _registering:
        for uid, keyword in retired_storage_classes().items():
            if uid_to_service_class(uid) is not StorageServiceClass:
                register_uid(uid, keyword, StorageServiceClass)
    return sorted(retired_storage_classes())
