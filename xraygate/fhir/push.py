"""Push to an EHR's FHIR server: a transaction Bundle of PUTs, POSTed with httpx.

Answers are classified by the one HTTP delivery policy (:mod:`xraygate.core.http_delivery`):
2xx delivered; 5xx, 408, 425, 429, timeouts and connection failures retried with backoff by the
queue; any other 4xx refused for good, the server's OperationOutcome recorded with the
dead-lettered message.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx

from xraygate.core.config import Settings, secret_value
from xraygate.core.http_delivery import post
from xraygate.core.models import OutboxMessage
from xraygate.core.outbox import DeliveryOutcome, Sender

FHIR_JSON = "application/fhir+json"


def transaction_bundle(bundle_id: str, base_url: str, resources: list[dict[str, Any]]) -> str:
    """The Bundle as sent: server-assigned meta dropped, version-specific references unversioned
    (the EHR server numbers its own versions)."""
    entries = []
    for resource in resources:
        body = copy.deepcopy(resource)
        body.pop("meta", None)
        for target in body.get("target", []):
            target["reference"] = str(target.get("reference", "")).split("/_history/")[0]
        path = f"{body['resourceType']}/{body['id']}"
        entries.append(
            {
                "fullUrl": f"{base_url.rstrip('/')}/{path}",
                "resource": body,
                "request": {"method": "PUT", "url": path},
            }
        )
    bundle = {"resourceType": "Bundle", "id": bundle_id, "type": "transaction", "entry": entries}
    return json.dumps(bundle, separators=(",", ":"))


def make_push_sender(settings: Settings, client: httpx.Client | None = None) -> Sender:
    http = client or httpx.Client(timeout=settings.fhir_push_timeout)

    def send(message: OutboxMessage) -> DeliveryOutcome:
        url = settings.fhir_push_url
        if not url:
            return DeliveryOutcome("reject", "FHIR push is not configured (XRAYGATE_FHIR_PUSH_URL)")
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        token = secret_value(settings.fhir_push_auth_token)
        if token:
            headers[settings.fhir_push_auth_header] = token
        content = message.message.encode()
        return post(http, url.rstrip("/"), content, headers, summarize=_outcome_summary)

    return send


def _outcome_summary(body: str) -> str:
    """The first issue of an OperationOutcome, else the start of the body."""
    try:
        data = json.loads(body)
        issue = data["issue"][0]
        return str(issue.get("diagnostics") or issue.get("details", {}).get("text") or issue)[:500]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return body[:500]
