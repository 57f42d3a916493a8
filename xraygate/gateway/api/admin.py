"""Admin API: model versions (activate, roll back), dead letters (retry), effective settings,
and the audit trail as FHIR AuditEvent resources. Included behind the ``admin`` role; reading
the audit trail is itself audited."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlmodel import col

from xraygate.core import db
from xraygate.core.errors import ModelRegistryError, QueueError
from xraygate.core.jobs import outbox_id_of
from xraygate.core.models import AuditRecord, Job, JobState, ModelState, utcnow
from xraygate.core.models.audit import model_event
from xraygate.core.models.results import rollback, set_state
from xraygate.core.outbox import retry_message
from xraygate.gateway.deps import (
    AUDITED,
    EngineDep,
    PrincipalDep,
    QueueDep,
    ReadDb,
    SettingsDep,
)
from xraygate.gateway.errors import FHIR_JSON, Conflict, JsonRoute, NotFound, fhir_json
from xraygate.gateway.views.admin import (
    DeadLetter,
    ModelOut,
    audit_event,
    list_dead_letters,
    list_models,
)

router = APIRouter(prefix="/api/admin", tags=["admin"], route_class=JsonRoute)
_SECRET_WORDS = ("secret", "password", "token", "key_id")
MAX_ID = 2**63 - 1  # BIGINT / SQLite INTEGER
DbId = Annotated[int, Path(ge=1, le=MAX_ID, description="row id")]
FHIR_OK: dict[int | str, dict[str, Any]] = {200: {"content": {FHIR_JSON: {}}}}


@router.get("/models")
def models(session: ReadDb) -> list[ModelOut]:
    """Registered model versions."""
    return list_models(session)


@router.post("/models/{name}/{version}/activate")
def activate(name: str, version: str, engine: EngineDep, principal: PrincipalDep) -> ModelOut:
    """Make this version the active one (the previously active one is retired); audited."""
    try:
        with db.write_session(engine) as session:
            row = set_state(session, name, version, ModelState.ACTIVE)
            session.add(model_event("activate", row.label, actor=principal.subject, via="api"))
    except ModelRegistryError as exc:
        raise NotFound(str(exc)) from exc
    return ModelOut.of(row)


@router.post("/models/rollback")
def roll_back(engine: EngineDep, principal: PrincipalDep) -> ModelOut:
    """Re-activate the version that was active before the current one; audited."""
    try:
        with db.write_session(engine) as session:
            row = rollback(session)
            session.add(model_event("rollback", row.label, actor=principal.subject, via="api"))
    except ModelRegistryError as exc:
        raise Conflict(str(exc)) from exc
    return ModelOut.of(row)


@router.get("/dead-letters")
def dead_letters(
    session: ReadDb, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[DeadLetter]:
    """Dead-lettered jobs, newest first (the study only as its log correlation id)."""
    return list_dead_letters(session, limit)


@router.post("/dead-letters/{job_id}/retry")
def retry(job_id: DbId, session: ReadDb, queue: QueueDep) -> dict[str, Any]:
    """Put a dead job back in the queue (a dead delivery's outbox message with it)."""
    job = session.get(Job, job_id)
    if job is None or job.state != JobState.DEAD:
        raise NotFound(f"no dead job {job_id}")
    try:
        if (outbox_id := outbox_id_of(job.dedupe_key)) is not None:
            retry_message(queue, outbox_id)
        else:
            queue.retry(job_id)
    except QueueError as exc:
        raise Conflict(str(exc)) from exc
    return {"id": job_id, "state": JobState.PENDING.value}


def mask_url(url: str) -> str:
    """``url`` with the password of its user info (``postgresql://u:pw@host``) masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "********"  # unparseable: it may hold anything
    if password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:********@{host}"))


@router.get("/settings")
def effective_settings(settings: SettingsDep) -> dict[str, Any]:
    """The settings in force, secrets masked."""
    out: dict[str, Any] = {}
    for name, value in settings.model_dump(mode="python").items():
        secret = isinstance(value, SecretStr) or any(w in name for w in _SECRET_WORDS)
        if secret and value is not None:
            out[name] = "********"
        elif isinstance(value, str) and "://" in value:
            out[name] = mask_url(value)
        elif isinstance(value, str | int | float | bool | list) or value is None:
            out[name] = value
        else:
            out[name] = str(value)
    return out


@router.get("/audit", response_class=Response, responses=FHIR_OK, dependencies=[AUDITED])
def audit(
    request: Request,
    session: ReadDb,
    count: Annotated[int, Query(alias="_count", ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(alias="_offset", ge=0, le=MAX_ID)] = 0,
    agent: Annotated[str | None, Query(max_length=200, description="actor")] = None,
    study: Annotated[str | None, Query(max_length=64, description="Study Instance UID")] = None,
) -> Response:
    """The audit trail, newest first, as a FHIR searchset Bundle of AuditEvent resources."""
    query = select(AuditRecord)
    if agent:
        query = query.where(col(AuditRecord.actor) == agent)
    if study:
        query = query.where(col(AuditRecord.study_uid) == study)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(col(AuditRecord.id).desc()).offset(offset).limit(count)
    ).all()
    base = str(request.base_url).rstrip("/")
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": utcnow().isoformat(timespec="milliseconds"),
        "total": total,
        "link": [{"relation": "self", "url": str(request.url)}],
        "entry": [
            {
                "fullUrl": f"{base}/api/admin/audit/{row.id}",
                "resource": audit_event(row),
                "search": {"mode": "match"},
            }
            for row in rows
        ],
    }
    if not bundle["entry"]:
        del bundle["entry"]  # FHIR forbids empty arrays
    return fhir_json(bundle)


@router.get("/audit/{event_id}", response_class=Response, responses=FHIR_OK, dependencies=[AUDITED])
def audit_one(event_id: DbId, session: ReadDb) -> Response:
    """One audit record as a FHIR AuditEvent."""
    row = session.get(AuditRecord, event_id)
    if row is None:
        raise NotFound(f"no audit event {event_id}")
    return fhir_json(audit_event(row))
