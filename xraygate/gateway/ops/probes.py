"""Liveness and readiness probes: ``/healthz`` answers while the process does; ``/readyz`` checks
the database, the object store (the app's own) and an emitting model whose artifact is stored."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.errors import XraygateError
from xraygate.core.models.results import emitting_version
from xraygate.core.storage import ObjectStore
from xraygate.gateway.deps import SettingsDep, object_store
from xraygate.gateway.errors import JsonRoute

router = APIRouter(route_class=JsonRoute)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None, responses={503: {}})
def readyz(request: Request, settings: SettingsDep) -> JSONResponse:
    """Readiness: database, object store, and an emitting model whose artifact is stored."""
    checks = readiness(settings, lambda: object_store(request, settings))
    ready = all(value == "ok" for key, value in checks.items() if key != "model_version")
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def readiness(settings: Settings, store_of: Callable[[], ObjectStore]) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with db.get_engine(settings.resolved_database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports, never raises
        checks["database"] = f"error: {type(exc).__name__}"
    store: ObjectStore | None = None
    try:
        store = store_of()
        store.check()
        checks["object_store"] = "ok"
    except XraygateError as exc:
        checks["object_store"] = f"error: {type(exc).__name__}"
    checks.update(_model_check(settings, store) if checks["database"] == "ok" else {})
    return checks


def _model_check(settings: Settings, store: ObjectStore | None) -> dict[str, str]:
    try:
        with db.read_session(db.get_engine(settings.resolved_database_url)) as session:
            row = emitting_version(session, settings.model_policy)
    except Exception as exc:  # e.g. the schema is not migrated yet
        return {"model": f"error: {type(exc).__name__}"}
    if row is None:
        return {"model": "error: no emitting model registered"}
    if store is None:
        return {"model": "error: object store unavailable", "model_version": row.label}
    try:
        present = store.exists(row.object_key)
    except XraygateError as exc:
        return {"model": f"error: {type(exc).__name__}", "model_version": row.label}
    status = "ok" if present else "error: model artifact missing from the object store"
    return {"model": status, "model_version": row.label}
