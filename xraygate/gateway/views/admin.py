"""Read models of the admin API and page: model versions, dead-lettered jobs, and the audit trail
as FHIR R4 AuditEvents (from the records the audit middleware writes, and the model-lifecycle
records the CLI, the workers and the admin API write)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent
from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import Session, col

from xraygate.core.logging import correlation_id
from xraygate.core.models import AuditRecord, Job, JobState, ModelVersion
from xraygate.core.models.audit import MODEL_METHOD

AUDIT_SOURCE = "xraygate-gateway"
_OUTCOME_DISPLAY = {"0": "Success", "4": "Minor failure", "8": "Serious failure"}


class ModelOut(BaseModel):
    name: str
    version: str
    label: str
    state: str
    auroc: float | None
    sha256: str
    demo: bool
    imported_at: datetime
    activated_at: datetime | None

    @classmethod
    def of(cls, row: ModelVersion) -> ModelOut:
        return cls(
            name=row.name,
            version=row.version,
            label=row.label,
            state=row.state,
            auroc=row.auroc,
            sha256=row.sha256,
            demo=bool(row.manifest.get("demo")),
            imported_at=row.imported_at,
            activated_at=row.activated_at,
        )


class DeadLetter(BaseModel):
    id: int
    kind: str
    correlation_id: str
    attempts: int
    last_error: str | None
    updated_at: datetime


def list_models(session: Session) -> list[ModelOut]:
    rows = session.scalars(select(ModelVersion).order_by(col(ModelVersion.id)))
    return [ModelOut.of(r) for r in rows]


def list_dead_letters(session: Session, limit: int = 200) -> list[DeadLetter]:
    """Dead jobs, newest first; the study only as its log correlation id."""
    rows = session.scalars(
        select(Job)
        .where(col(Job.state) == JobState.DEAD)
        .order_by(col(Job.updated_at).desc())
        .limit(limit)
    )
    return [
        DeadLetter(
            id=r.id or 0,
            kind=r.kind,
            correlation_id=correlation_id(r.study_uid) if r.study_uid else "-",
            attempts=r.attempts,
            last_error=r.last_error,
            updated_at=r.updated_at,
        )
        for r in rows
    ]


def outcome_code(status: int) -> str:
    """FHIR AuditEvent.outcome: 0 success, 4 refused/minor failure, 8 server failure. On the
    audited routes a 303 is the pages' redirect to the login page: refused."""
    if status < 400 and status != 303:
        return "0"
    return "4" if status < 500 else "8"


DCM = "http://dicom.nema.org/resources/ontology/DCM"
#: model-lifecycle steps -> DICOM audit event type (PS3.15 A.5 / CID 400)
_MODEL_EVENT_TYPES = {
    "publish": ("110106", "Export"),
    "pull": ("110107", "Import"),
    "import": ("110107", "Import"),
    "refuse": ("110107", "Import"),
}


def model_audit_event(row: AuditRecord) -> dict[str, Any]:
    """A model-lifecycle record (publish, pull, refuse, import, shadow, activate, rollback,
    promote) as a FHIR R4 AuditEvent: DICOM event type, our subtype, the version as entity."""
    step = row.route.removeprefix("model ")
    code, display = _MODEL_EVENT_TYPES.get(step, ("110100", "Application Activity"))
    outcome = outcome_code(row.status)
    entity: dict[str, Any] = {
        "what": {"display": row.path},
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
            "code": "2",
            "display": "System Object",
        },
        "description": f"model version {row.path}",
    }
    if row.query:
        entity["detail"] = [{"type": "detail", "valueString": row.query}]
    body: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.id),
        "type": {"system": DCM, "code": code, "display": display},
        "subtype": [{"system": "urn:xraygate:model-lifecycle", "code": step}],
        "action": row.action,
        "recorded": row.recorded_at.isoformat(timespec="milliseconds"),
        "outcome": outcome,
        "outcomeDesc": f"{step}: {'done' if outcome == '0' else 'refused'}",
        "agent": [{"who": {"display": row.actor}, "requestor": True, "altId": row.auth_method}],
        "source": {
            "observer": {"display": f"xraygate ({row.auth_method or 'cli'})"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": [entity],
    }
    return AuditEvent.model_validate(body).model_dump(mode="json", exclude_none=True)


def audit_event(row: AuditRecord) -> dict[str, Any]:
    """The record as a FHIR R4 AuditEvent (validated by fhir.resources)."""
    if row.method == MODEL_METHOD:
        return model_audit_event(row)
    outcome = outcome_code(row.status)
    rest = row.route.startswith("/fhir/")
    subtype = "search-type" if rest and row.route.count("/") == 2 else "read"
    entity: dict[str, Any] = {
        "what": {"display": f"{row.method} {row.path}"},
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
            "code": "2",
            "display": "System Object",
        },
        "description": row.route,
    }
    if row.study_uid:
        entity["what"]["identifier"] = {
            "system": "urn:dicom:uid",
            "value": f"urn:oid:{row.study_uid}",
        }
    if row.query:
        entity["detail"] = [{"type": "query", "valueString": row.query}]
    agent: dict[str, Any] = {
        "who": {"display": row.actor},
        "requestor": True,
        "role": [{"text": r} for r in row.roles.split()] or None,
        "altId": row.auth_method or None,
    }
    if row.source:
        agent["network"] = {"address": row.source, "type": "2"}
    body: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.id),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": subtype}
            if rest
            else {"system": "urn:xraygate:route", "code": row.route}
        ],
        "action": row.action,
        "recorded": row.recorded_at.isoformat(timespec="milliseconds"),
        "outcome": outcome,
        "outcomeDesc": f"HTTP {row.status} {_OUTCOME_DISPLAY[outcome]}",
        "agent": [{k: v for k, v in agent.items() if v is not None}],
        "source": {
            "observer": {"display": AUDIT_SOURCE},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": [entity],
    }
    return AuditEvent.model_validate(body).model_dump(mode="json", exclude_none=True)
