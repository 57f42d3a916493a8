"""Delivery over HTTP: one retry policy for every channel that POSTs a stored message to a peer.

Used by the FHIR push (``fhir/push.py``) and the escalation webhook (:func:`make_webhook_sender`).

- 2xx: delivered.
- 5xx, 408 Request Timeout, 425 Too Early, 429 Too Many Requests, a timeout or a failed
  connection: retried with the queue's backoff.
- any other status: refused for good; the peer's answer is recorded with the dead message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx

from xraygate.core.models import OutboxMessage
from xraygate.core.outbox import DeliveryOutcome, Sender

RETRYABLE_4XX = frozenset({408, 425, 429})
RESPONSE_KEPT = 20000  # characters of the peer's answer stored with the message


def is_retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_4XX


def post(
    client: httpx.Client,
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    *,
    summarize: Callable[[str], str] | None = None,
) -> DeliveryOutcome:
    """POST ``content`` and classify the answer; ``summarize`` adds the gist of a refusal."""
    try:
        reply = client.post(url, content=content, headers=dict(headers))
    except httpx.TimeoutException as exc:
        return DeliveryOutcome("retry", f"timeout: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return DeliveryOutcome("retry", f"connection failed: {type(exc).__name__}")
    body = reply.text[:RESPONSE_KEPT]
    code = reply.status_code
    if 200 <= code < 300:
        return DeliveryOutcome("delivered", f"HTTP {code}", body)
    if is_retryable(code):
        return DeliveryOutcome("retry", f"HTTP {code}", body)
    detail = f"HTTP {code}: {summarize(body)}" if summarize else f"HTTP {code}"
    return DeliveryOutcome("reject", detail, body)


def make_webhook_sender(url: str | None, timeout: float) -> Sender:
    """POST each message's stored body as is, with its content type (the escalation webhook)."""
    client = httpx.Client(timeout=timeout)

    def send(message: OutboxMessage) -> DeliveryOutcome:
        if not url:
            return DeliveryOutcome("reject", "escalation webhook is not configured")
        headers = {"Content-Type": message.content_type}
        return post(client, url, message.message.encode(), headers)

    return send
