"""The audit trail: every call of a route flagged ``AUDITED`` (those that read or write patient
data) is recorded, whatever its outcome.

:class:`AuditMiddleware` lets the request run, then writes an :class:`AuditRecord` with the caller
(set by the auth dependency, "anonymous" when none got through), the route, path and query, the
study, the client address and the HTTP status. The admin API serves the records as FHIR
AuditEvents (``views/admin.py``).
"""

from __future__ import annotations

import logging

import anyio
from starlette.types import ASGIApp, Scope

from xraygate.core import metrics
from xraygate.core.db import get_engine, write_session
from xraygate.core.errors import XraygateError
from xraygate.core.models import AuditRecord
from xraygate.gateway.deps import is_audited
from xraygate.gateway.middleware.observe import ObservingMiddleware

log = logging.getLogger(__name__)

_ACTIONS = {"GET": "R", "HEAD": "R", "POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"}


class AuditMiddleware(ObservingMiddleware):
    def __init__(self, app: ASGIApp, database_url: str) -> None:
        super().__init__(app)
        self.database_url = database_url

    async def after(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        if is_audited(route) and scope["method"] in _ACTIONS:
            record = _record(scope, route.path, status)
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
