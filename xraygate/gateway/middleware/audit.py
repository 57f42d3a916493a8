"""The audit trail: every request to a patient-data route is recorded, whatever its outcome.

:class:`AuditMiddleware` (pure ASGI) lets the request run, then, if the matched route is one of
:data:`AUDITED` routes, writes an :class:`AuditRecord` with the caller (set by the auth
dependency, "anonymous" when none got through), the route, path and query, the study, the
client address and the HTTP status. :func:`audit_event` renders a record as a FHIR R4 AuditEvent.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastapi.routing import APIRoute
from fhir.resources.R4B.auditevent import AuditEvent
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xraygate.core import metrics
from xraygate.core.db import get_engine, write_session
from xraygate.core.errors import XraygateError
from xraygate.core.models import AuditRecord

log = logging.getLogger(__name__)

AUDIT_SOURCE = "xraygate-gateway"
_ACTIONS = {"GET": "R", "HEAD": "R", "POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"}
_OUTCOME_DISPLAY = {"0": "Success", "4": "Minor failure", "8": "Serious failure"}


def is_audited(method: str, route_path: str) -> bool:
    """Routes that read or write patient data."""
    if route_path == "/fhir/metadata":
        return False
    return (
        route_path.startswith(("/fhir/", "/api/studies", "/studies/", "/api/admin/audit"))
        or route_path in ("/worklist", "/api/worklist")
    ) and method in _ACTIONS


class AuditMiddleware:
    def __init__(self, app: ASGIApp, database_url: str) -> None:
        self.app = app
        self.database_url = database_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            if isinstance(route, APIRoute) and is_audited(scope["method"], route.path):
                record = _record(scope, route.path, status["code"])
                await anyio.to_thread.run_sync(self._write, record)

    def _write(self, record: AuditRecord) -> None:
        try:
            with write_session(get_engine(self.database_url)) as session:
                session.add(record)
            metrics.AUDIT_EVENTS.labels("written").inc()
        except XraygateError:
            metrics.AUDIT_EVENTS.labels("failed").inc()
            log.exception("audit record could not be written")


def _record(scope: Scope, route_path: str, status: int) -> AuditRecord:
    principal = scope.get("state", {}).get("principal")
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
    client = scope.get("client")
    study_uid = scope.get("path_params", {}).get("study_uid")
    return AuditRecord(
        actor=(principal.subject if principal else "anonymous")[:200],
        auth_method=principal.method if principal else "",
        roles=" ".join(sorted(principal.roles)) if principal else "",
        action=_ACTIONS.get(scope["method"], "E"),
        method=scope["method"][:8],
        route=route_path[:200],
        path=str(scope.get("path", ""))[:500],
        query=scope.get("query_string", b"").decode("latin-1")[:2000],
        study_uid=str(study_uid)[:64] if study_uid else None,
        source=(client[0] if client else "")[:64],
        user_agent=headers.get("user-agent", "")[:200],
        status=status,
    )


def outcome_code(status: int) -> str:
    """FHIR AuditEvent.outcome: 0 success, 4 refused/minor failure, 8 server failure. On the
    audited routes a 303 is the pages' redirect to the login page: refused."""
    if status < 400 and status != 303:
        return "0"
    return "4" if status < 500 else "8"


def audit_event(row: AuditRecord) -> dict[str, Any]:
    """The record as a FHIR R4 AuditEvent (validated by fhir.resources)."""
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
