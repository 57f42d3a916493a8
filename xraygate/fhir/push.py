"""Push to an EHR's FHIR server: a transaction Bundle that matches records instead of making them.

- The patient is the EHR's: never written (``XRAYGATE_FHIR_PUSH_PATIENT_MODE=reference``, the
  default); every reference to it is a conditional reference ``Patient?identifier=system|value``
  that the server resolves to its own patient (R4 transaction rules: exactly one match, else
  the transaction fails). ``create-if-missing`` adds a conditional create (``POST Patient`` with
  ``ifNoneExist``) of a minimal Patient and references that entry.
- Our own resources carry no id: each entry's ``fullUrl`` is ``urn:uuid:<our id>`` (references
  between them use it; the server assigns its own ids) and its request a conditional update on
  our business identifier (``PUT Observation?identifier=...``; ImagingStudy on its Study Instance
  UID, Device on the model version), so a re-push is idempotent on any R4 server. Provenance has
  no identifier in R4: it is a conditional create on a ``meta.tag`` naming the report version.

Answers are classified by the one HTTP delivery policy (:mod:`xraygate.core.http_delivery`):
2xx delivered; 5xx, 408, 425, 429, timeouts and connection failures retried with backoff by the
queue; any other 4xx refused for good, the server's OperationOutcome recorded with the
dead-lettered message.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

import httpx

from xraygate.core.config import Settings, secret_value
from xraygate.core.errors import PermanentDelivery
from xraygate.core.http_delivery import post
from xraygate.core.models import OutboxMessage
from xraygate.core.outbox import DeliveryOutcome, Sender
from xraygate.fhir.identity import identifier_query, token

FHIR_JSON = "application/fhir+json"
PatientMode = Literal["reference", "create-if-missing"]
Json = dict[str, Any]

#: The identifier a conditional update matches on, per resource type: (system suffix or None
#: for any system, index in ``identifier``).
MATCH_ON_FIRST_IDENTIFIER = ("ImagingStudy", "Device", "Observation", "DiagnosticReport")


class UnidentifiedPatient(PermanentDelivery):
    """The patient has no PatientID: the EHR's patient cannot be found by identifier."""


def provenance_tag(system_base: str, provenance_id: str) -> Json:
    return {"system": f"{system_base.rstrip('/')}/provenance", "code": provenance_id}


def patient_query(patient: Json) -> str:
    """``identifier=system|value`` of the patient's first identifier (its MRN)."""
    for ident in patient.get("identifier", []):
        if ident.get("system") and ident.get("value"):
            return identifier_query(ident)
    raise UnidentifiedPatient("the patient has no PatientID to find the EHR's patient by")


def transaction_bundle(
    bundle_id: str,
    resources: list[Json],
    *,
    system_base: str,
    patient_mode: PatientMode = "reference",
) -> str:
    """The Bundle as sent (see the module doc); ``resources`` as stored locally."""
    [patient] = [r for r in resources if r["resourceType"] == "Patient"]
    query = patient_query(patient)
    targets = {
        f"{r['resourceType']}/{r['id']}": f"urn:uuid:{r['id']}"
        for r in resources
        if r["resourceType"] != "Patient"
    }
    patient_key = f"Patient/{patient['id']}"
    entries: list[Json] = []
    if patient_mode == "create-if-missing":
        targets[patient_key] = f"urn:uuid:{patient['id']}"
        body = _strip(patient)
        entries.append(
            {
                "fullUrl": targets[patient_key],
                "resource": body,
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": query},
            }
        )
    else:
        targets[patient_key] = f"Patient?{query}"
    for resource in resources:
        rtype = resource["resourceType"]
        if rtype == "Patient":
            continue
        body = _rewrite(_strip(resource), targets)
        entry: Json = {"fullUrl": f"urn:uuid:{resource['id']}", "resource": body}
        if rtype == "Provenance":
            tag = provenance_tag(system_base, resource["id"])
            body["meta"] = {"tag": [tag]}
            entry["request"] = {
                "method": "POST",
                "url": "Provenance",
                "ifNoneExist": f"_tag={token(tag['system'], tag['code'])}",
            }
        else:
            entry["request"] = {"method": "PUT", "url": f"{rtype}?{_match(resource)}"}
        entries.append(entry)
    bundle = {"resourceType": "Bundle", "id": bundle_id, "type": "transaction", "entry": entries}
    return json.dumps(bundle, separators=(",", ":"))


def _match(resource: Json) -> str:
    rtype = resource["resourceType"]
    if rtype not in MATCH_ON_FIRST_IDENTIFIER or not resource.get("identifier"):
        raise PermanentDelivery(f"{rtype} has no business identifier to push it by")
    return identifier_query(resource["identifier"][0])


def _strip(resource: Json) -> Json:
    """Our local id and server metadata removed: the EHR's server numbers its own."""
    body = copy.deepcopy(resource)
    body.pop("meta", None)
    body.pop("id", None)
    return body


def _rewrite(node: Any, targets: dict[str, str]) -> Any:
    """Every ``reference`` to a resource of the Bundle (versioned or not) pointed at its entry."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                local = value.split("/_history/")[0]
                node[key] = targets.get(local, value)
            else:
                _rewrite(value, targets)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, targets)
    return node


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
