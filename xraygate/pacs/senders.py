"""Storing DICOM objects from the outbox in the PACS: C-STORE SCU (optionally over TLS) or STOW-RS.

An outbox message of the ``pacs`` channel holds one DICOM Part 10 file, base64-encoded (the
outbox stores text); the retry sends the identical bytes. What the peer says becomes a
:class:`~xraygate.core.outbox.DeliveryOutcome`:

- C-STORE: success or warning (0xB000-0xBFFF) is delivered; "out of resources" (0xA7xx), a
  refused, aborted or unanswered association, a timeout or a failed connection is retried; any
  other failure status (0xA9xx data set does not match, 0xC0xx cannot understand, 0x0122 SOP
  class not supported) is refused for good and dead-lettered;
- STOW-RS: the HTTP status classified like every HTTP channel (:mod:`xraygate.core.http_delivery`):
  2xx delivered, 5xx/408/425/429 retried, other 4xx (409: the PACS refused the instance) refused.
"""

from __future__ import annotations

import base64
import ssl
from io import BytesIO

import httpx
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pynetdicom import AE

from xraygate.core import multipart
from xraygate.core.config import Settings
from xraygate.core.dimse_scu import keep_responses
from xraygate.core.http_delivery import post
from xraygate.core.models import OutboxMessage
from xraygate.core.outbox import DeliveryOutcome, Sender

DICOM_CONTENT_TYPE = multipart.DICOM  # the message is base64 of this


def encode(part10: bytes) -> str:
    return base64.b64encode(part10).decode("ascii")


def decode(message: OutboxMessage) -> bytes:
    return base64.b64decode(message.message.encode("ascii"), validate=True)


def _dataset(message: OutboxMessage) -> Dataset:
    try:
        return dcmread(BytesIO(decode(message)))
    except (InvalidDicomError, ValueError) as exc:
        raise ValueError(f"outbox message {message.id} is not a DICOM file") from exc


def classify_status(status: int, comment: str = "") -> DeliveryOutcome:
    """A C-STORE response status as a delivery outcome."""
    text = f"C-STORE status 0x{status:04X}" + (f": {comment}" if comment else "")
    if status == 0 or (status >> 12) == 0xB:
        return DeliveryOutcome("delivered", text, text)
    if (status >> 8) == 0xA7:  # refused: out of resources
        return DeliveryOutcome("retry", text, text)
    return DeliveryOutcome("reject", text, text)


def tls_context(settings: Settings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=str(settings.pacs_tls_ca_file) if settings.pacs_tls_ca_file else None,
    )
    if settings.pacs_tls_cert_file:
        ctx.load_cert_chain(
            str(settings.pacs_tls_cert_file),
            str(settings.pacs_tls_key_file) if settings.pacs_tls_key_file else None,
        )
    return ctx


def make_cstore_sender(settings: Settings) -> Sender:
    """A C-STORE SCU: one association per message (the outbox sends a patient's stream in
    order), proposing exactly the object's SOP class in its own transfer syntax."""
    host, port = settings.pacs_host, settings.pacs_port
    tls = tls_context(settings) if settings.pacs_tls else None

    def send(message: OutboxMessage) -> DeliveryOutcome:
        if not host or not port:
            return DeliveryOutcome("retry", "XRAYGATE_PACS_HOST/PORT is not configured")
        try:
            ds = _dataset(message)
        except ValueError as exc:
            return DeliveryOutcome("reject", str(exc))
        ae = AE(ae_title=settings.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.pacs_timeout
        ae.connection_timeout = settings.pacs_timeout
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = keep_responses(
            ae.associate(
                host,
                port,
                ae_title=settings.pacs_ae,
                tls_args=(tls, host) if tls is not None else None,
            )
        )
        if not assoc.is_established:
            why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
            return DeliveryOutcome("retry", f"association with {settings.pacs_ae} {why}")
        try:
            reply = assoc.send_c_store(ds)
        finally:
            if assoc.is_established:
                assoc.release()
        if "Status" not in reply:
            return DeliveryOutcome("retry", "no C-STORE response (timeout or aborted)")
        return classify_status(int(reply.Status), str(reply.get("ErrorComment", "")))

    return send


def make_stow_sender(settings: Settings) -> Sender:
    """STOW-RS: POST each object alone to ``<pacs_stow_url>/studies``."""
    url = (settings.pacs_stow_url or "").rstrip("/") + "/studies"
    client = httpx.Client(timeout=settings.pacs_timeout)
    token = settings.pacs_stow_auth_token

    def send(message: OutboxMessage) -> DeliveryOutcome:
        boundary = multipart.new_boundary()
        headers = {
            "Content-Type": multipart.content_type(boundary),
            "Accept": "application/dicom+json",
        }
        if token is not None:
            headers["Authorization"] = token.get_secret_value()
        body = multipart.build([(multipart.DICOM, decode(message))], boundary)
        return post(client, url, body, headers)

    return send


def make_sender(settings: Settings) -> Sender:
    """STOW-RS when ``pacs_stow_url`` is set, else C-STORE."""
    return make_stow_sender(settings) if settings.pacs_stow_url else make_cstore_sender(settings)


def enabled(settings: Settings) -> bool:
    return bool(settings.pacs_stow_url or (settings.pacs_host and settings.pacs_port))
