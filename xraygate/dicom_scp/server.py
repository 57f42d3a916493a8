"""The Storage SCP: a pynetdicom application entity with small event handlers.

Incoming data sets are streamed by pynetdicom to a temporary file (never held whole in memory)
inside ``<data_dir>/tmp``, on the same filesystem as a local object store, so storing is a rename.
"""

from __future__ import annotations

import logging
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

from pydicom import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, _config, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from xraygate.core import metrics
from xraygate.core.config import Settings
from xraygate.core.errors import ConfigurationError
from xraygate.core.ingest import Ingestor, Received, Status
from xraygate.core.queue import JobQueue
from xraygate.core.storage import ObjectStore
from xraygate.dicom_scp import netio, wakeups
from xraygate.dicom_scp.fastpath import StoreCallback, StoreRequest
from xraygate.dicom_scp.guard import (
    AssociationLimiter,
    GuardedRequestHandler,
    GuardedServer,
    calling_aet,
    close_fast_path,
    register_retired_storage,
)

log = logging.getLogger(__name__)

TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]


def answer_store(
    ingestor: Ingestor, closing: threading.Event | None, received: Received
) -> tuple[int, str]:
    """The status (and error comment) for one received data set: ingested, or refused while
    a stopping SCP's grace period is over."""
    if closing is not None and closing.is_set():
        metrics.INSTANCES_REFUSED.labels(status=f"0x{Status.OUT_OF_RESOURCES:04X}").inc()
        return int(Status.OUT_OF_RESOURCES), "SCP shutting down: send again"
    outcome = ingestor.ingest(received)
    return int(outcome.status), outcome.comment


def handle_store(event: Any, ingestor: Ingestor, closing: threading.Event | None = None) -> Dataset:
    """EVT_C_STORE (pynetdicom's path): hand the spooled file to the ingestor."""
    request = event.request
    digest = netio.spool_digest(request)
    received = Received(
        path=event.dataset_path,
        calling_aet=calling_aet(event.assoc),
        sop_class_uid=str(request.AffectedSOPClassUID or ""),
        sop_instance_uid=str(request.AffectedSOPInstanceUID or ""),
        transfer_syntax_uid=str(event.context.transfer_syntax or ""),
        size=digest[0] if digest else None,
        sha256=digest[1] if digest else None,
    )
    status, comment = answer_store(ingestor, closing, received)
    response = Dataset()
    response.Status = status
    if comment:
        response.ErrorComment = comment[:64]
    return response


def fast_store(ingestor: Ingestor, closing: threading.Event | None) -> StoreCallback:
    """The fast path's ingest callback (see :mod:`.fastpath`): the same answer as above."""

    def on_store(request: StoreRequest, assoc: Any) -> tuple[int, str]:
        received = Received(
            path=request.path,
            data=request.data,
            calling_aet=calling_aet(assoc),
            sop_class_uid=request.sop_class_uid,
            sop_instance_uid=request.sop_instance_uid,
            transfer_syntax_uid=request.transfer_syntax_uid,
            size=request.size,
            sha256=request.sha256,
        )
        return answer_store(ingestor, closing, received)

    return on_store


def handle_echo(_event: Any) -> int:
    return int(Status.SUCCESS)


def handle_conn_open(event: Any) -> None:
    """Answer each C-STORE at once: without TCP_NODELAY small responses wait for delayed ACKs."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _active(delta: int) -> Any:
    def handler(_event: Any) -> None:
        metrics.ASSOCIATIONS_ACTIVE.inc(delta)

    return handler


def _count(outcome: str) -> Any:
    def handler(_event: Any) -> None:
        metrics.ASSOCIATIONS.labels(outcome=outcome).inc()

    return handler


def build_ae(settings: Settings) -> AE:
    """The application entity with every storage SOP class (the retired ones too) and
    transfer syntax we accept. Association limits are the AssociationLimiter's (guard.py):
    pynetdicom's own count includes connections still negotiating, so it only backs it up."""
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = settings.max_associations + settings.dicom_max_pending_connections
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.network_timeout = settings.network_timeout
    ae.acse_timeout = settings.dicom_artim_seconds  # waiting for the A-ASSOCIATE-RQ (ARTIM)
    ae.require_calling_aet = list(settings.allowed_calling_aets)
    ae.require_called_aet = settings.require_called_aet
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
    for uid in register_retired_storage():
        ae.add_supported_context(uid, TRANSFER_SYNTAXES)
    return ae


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A server TLS context from the tls_* settings; mutual TLS when a CA file is set."""
    if settings.tls_cert_file is None:
        return None
    if settings.tls_key_file is None:
        raise ConfigurationError("XRAYGATE_TLS_KEY_FILE is required with XRAYGATE_TLS_CERT_FILE")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
        if settings.tls_ca_file is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(settings.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load DICOM TLS files: {exc}") from exc
    return context


class _Server(GuardedServer):
    """pynetdicom's threaded server, but the TLS handshake runs in the connection's thread.

    pynetdicom wraps accepted sockets with the handshake in the accept loop, so one peer that
    connects and stays silent would stop every other association from being accepted.
    """

    def get_request(self) -> tuple[socket.socket, Any]:
        assert self.socket is not None
        client, address = self.socket.accept()
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address


class _ReusePortServer(_Server):
    """Several receiving processes share the port (SO_REUSEPORT): the kernel spreads the
    incoming connections over them."""

    def server_bind(self) -> None:
        assert self.socket is not None
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class ScpServer:
    """A running SCP; ``port`` is the bound port (useful when configured as 0)."""

    def __init__(
        self, server: Any, ingestor: Ingestor, closing: threading.Event | None = None
    ) -> None:
        self._server = server
        self.ingestor = ingestor
        self.closing = closing or threading.Event()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def shutdown(self) -> None:
        """Stop accepting associations (those in progress finish in their own threads) and
        commit what the ingest journal holds."""
        self._server.shutdown()
        self.ingestor.close()

    def stop(self, grace: float, closing_seconds: float = 5.0) -> None:
        """Graceful stop (SIGTERM): accept no more associations; let those in progress go on
        for up to ``grace`` seconds; then answer their further C-STOREs 0xA700 (out of
        resources: send again) and, ``closing_seconds`` later, abort any still open. A C-STORE
        already being ingested always finishes: nothing is half-written."""
        self._server.shutdown()
        self._wait_idle(grace)
        self.closing.set()
        if not self._wait_idle(closing_seconds):
            for assoc in self._server.active_associations:
                assoc.abort()
            self._wait_idle(closing_seconds)
        self.ingestor.close(grace + closing_seconds)

    def _wait_idle(self, seconds: float) -> bool:
        """Wait for the established associations to end (a connection still negotiating, or
        a health check's, holds no data and is not waited for)."""
        deadline = time.monotonic() + seconds
        while any(a.is_established for a in self._server.active_associations):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


def clean_spool(spool: Path, idle_seconds: float) -> int:
    """Delete data sets left spooled by a killed process (never acknowledged, so resent).

    A file still being received is written at least every ``network_timeout`` seconds, so only
    files idle for longer than that are removed.
    """
    removed = 0
    cutoff = time.time() - idle_seconds
    for path in spool.glob("tmp*.dcm"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    if removed:
        log.warning("removed %d unacknowledged spooled data sets", removed)
    return removed


def start_scp(
    settings: Settings, store: ObjectStore, queue: JobQueue, *, reuse_port: bool = False
) -> ScpServer:
    """Start listening (in background threads) and return the running server; ``reuse_port``
    shares the port with the other receiving processes (see :mod:`.processes`)."""
    spool = settings.tmp_dir
    spool.mkdir(parents=True, exist_ok=True)
    clean_spool(spool, max(settings.network_timeout, 1.0))
    # pynetdicom spools each received data set with NamedTemporaryFile in the default temp dir:
    # keep it next to the object store so storing is a rename, not a copy.
    tempfile.tempdir = str(spool.resolve())
    _config.STORE_RECV_CHUNKED_DATASET = True
    netio.install()  # larger socket reads; the spool hashed as it is written
    wakeups.install()  # pynetdicom's polling threads woken when there is work
    ingestor = Ingestor(settings, store, queue)
    closing = threading.Event()
    handlers: list[Any] = [
        (evt.EVT_C_STORE, handle_store, [ingestor, closing]),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_CONN_OPEN, handle_conn_open),
        (evt.EVT_CONN_OPEN, _active(1)),
        (evt.EVT_CONN_CLOSE, _active(-1)),
        (evt.EVT_CONN_CLOSE, close_fast_path),
        (evt.EVT_ACCEPTED, _count("accepted")),
        (evt.EVT_REJECTED, _count("rejected")),
        (evt.EVT_ABORTED, _count("aborted")),
    ]
    limiter = AssociationLimiter(
        settings.max_associations,
        settings.max_associations_per_aet,
        settings.max_associations_per_address,
    )
    handlers.extend(limiter.handlers())
    ae = build_ae(settings)
    server = ae.make_server(
        (settings.dicom_host, settings.dicom_port),
        ssl_context=tls_context(settings),
        evt_handlers=handlers,
        server_class=_ReusePortServer if reuse_port else _Server,
        request_handler=GuardedRequestHandler,
    )
    cast(_Server, server).max_pending = settings.dicom_max_pending_connections
    if settings.scp_fast_path:
        server.fast_store = fast_store(ingestor, closing)  # type: ignore[attr-defined]
        server.fast_spool_memory = settings.scp_spool_memory_bytes  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="dicom-scp-accept", daemon=True)
    thread.start()
    ae._servers.append(server)  # so that server.shutdown() can unregister itself
    return ScpServer(server, ingestor, closing)
