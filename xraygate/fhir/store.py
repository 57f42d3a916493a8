"""Store emitted resources as versions in ``fhir_resources``, with their search columns.

Saving a resource whose content (apart from ``meta``) equals the current version changes nothing:
re-running an emit job is idempotent. Different content makes a new version (``meta.versionId`` +
1). The status is the builder's (:mod:`xraygate.core.result_status`): a re-scored preliminary
result stays ``preliminary``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from xraygate.core.models import FhirResource, utcnow
from xraygate.core.models.delivery import token_text


def _core(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def save(session: Session, resource: dict[str, Any], study_uid: str = "") -> tuple[int, bool]:
    """Store ``resource`` (mutated: meta). Returns (versionId, changed)."""
    rtype, rid = resource["resourceType"], resource["id"]
    current = session.scalars(
        select(FhirResource).where(
            col(FhirResource.resource_type) == rtype,
            col(FhirResource.resource_id) == rid,
            col(FhirResource.is_current).is_(True),
        )
    ).first()
    version = 1
    if current is not None:
        if _core(current.content) == _core(resource):
            resource["meta"] = current.content.get("meta", {})
            return current.version_id, False
        current.is_current = False
        session.add(current)
        session.flush()
        version = current.version_id + 1
    now = utcnow()
    resource["meta"] = {
        "versionId": str(version),
        "lastUpdated": now.isoformat(timespec="milliseconds"),
    }
    session.add(
        FhirResource(
            resource_type=rtype,
            resource_id=rid,
            version_id=version,
            is_current=True,
            last_updated=now,
            content=resource,
            study_uid=study_uid,
            **search_columns(resource),
        )
    )
    session.flush()
    return version, True


# --- search columns ----------------------------------------------------------------------------


def search_columns(resource: dict[str, Any]) -> dict[str, Any]:
    rtype = resource["resourceType"]
    subject = resource.get("subject", {}).get("reference", "")
    patient_ref = f"Patient/{resource['id']}" if rtype == "Patient" else subject
    codes = _codings(resource.get("code"))
    if rtype == "ImagingStudy":
        codes = [f"{c.get('system', '')}|{c.get('code', '')}" for c in resource.get("modality", [])]
    return {
        "patient_ref": patient_ref if patient_ref.startswith("Patient/") else "",
        "identifiers": token_text(_identifiers(resource.get("identifier", []))),
        "status": str(resource.get("status", "")),
        "categories": token_text(t for cc in resource.get("category", []) for t in _codings(cc)),
        "codes": token_text(codes),
        "date": parse_fhir_datetime(resource.get("effectiveDateTime") or resource.get("started")),
        "based_on": token_text(_based_on(resource.get("basedOn", []))),
        "refs": token_text(_refs(resource)),
    }


def _codings(concept: dict[str, Any] | None) -> list[str]:
    if not concept:
        return []
    return [f"{c.get('system', '')}|{c.get('code', '')}" for c in concept.get("coding", [])]


def _identifiers(identifiers: list[dict[str, Any]]) -> list[str]:
    return [f"{i.get('system', '')}|{i.get('value', '')}" for i in identifiers if i.get("value")]


def _based_on(refs: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for r in refs:
        if r.get("reference"):
            out.append(f"ref={r['reference']}")
        if r.get("identifier"):
            out.extend(f"id={t}" for t in _identifiers([r["identifier"]]))
    return out


def _refs(resource: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, path in (
        ("result", "result"),
        ("derived-from", "derivedFrom"),
        ("imaging-study", "imagingStudy"),
    ):
        out.extend(f"{name}={r['reference']}" for r in resource.get(path, []) if "reference" in r)
    device = resource.get("device", {}).get("reference")
    if device:
        out.append(f"device={device}")
    for target in resource.get("target", []):  # Provenance: any version of the target
        if "reference" in target:
            out.append(f"target={target['reference'].split('/_history/')[0]}")
    return out


def parse_fhir_datetime(value: str | None) -> datetime | None:
    """A FHIR date or dateTime as an aware datetime (its start, in UTC when no zone is given)."""
    if not value:
        return None
    text = value
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
