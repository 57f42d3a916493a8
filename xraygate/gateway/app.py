"""The FastAPI application: probes, metrics, pages and the APIs, each behind its roles.

================================  ==========================  ======================================
route                             who                         what
================================  ==========================  ======================================
/healthz, /readyz                 anyone                      liveness, readiness
/metrics                          anyone (admin if            Prometheus metrics
                                  XRAYGATE_METRICS_AUTH)
/login, /logout, /, /static       anyone                      the login page, its assets
/worklist, /studies/{uid}         clinician (session)         pages
/admin                            admin (session)             page
/api/worklist, /api/studies/...   clinician                   worklist, study, rendered images,
                                                              feedback (feedback_api)
/api/admin/...                    admin                       models, dead letters, settings, audit
/fhir/...                         ehr (scoped) or admin       FHIR R4 read API (fhir_api)
/api/me, /api/openapi.json        any authenticated caller    who am I, the API description
================================  ==========================  ======================================
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select, text
from sqlmodel import col
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import xraygate
from xraygate.core import db, metrics
from xraygate.core.config import Settings, get_settings
from xraygate.core.errors import XraygateError
from xraygate.core.logging import correlation_id, set_correlation
from xraygate.core.models import ModelState, ModelVersion
from xraygate.core.storage import ObjectStore, store_from_settings

# feedback_api and fhir_api belong to other areas: they have no auth inside and are included
# below behind their roles.
from xraygate.gateway import admin_api, clinical_api, deid_review, feedback_api, fhir_api, pages
from xraygate.gateway.audit import AuditMiddleware
from xraygate.gateway.auth import (
    Authenticator,
    PrincipalDep,
    current_principal,
    require_fhir_reader,
    require_roles,
)
from xraygate.gateway.queue_metrics import refresh_queue_metrics

log = logging.getLogger("xraygate.gateway")
STATIC = Path(__file__).with_name("static")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="xraygate",
        version=xraygate.__version__,
        description="AI triage of chest X-rays (demonstration model, not for clinical use).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.dependency_overrides[get_settings] = lambda: settings
    app.state.settings = settings
    app.state.authenticator = Authenticator.from_settings(settings)
    app.state.store = None

    app.include_router(operations_router(settings))
    app.include_router(pages.router)
    clinician = [Depends(require_roles("clinician"))]
    app.include_router(clinical_api.router, dependencies=clinician)
    app.include_router(feedback_api.router, dependencies=clinician)
    app.include_router(admin_api.router, dependencies=[Depends(require_roles("admin"))])
    app.include_router(deid_review.router, dependencies=[Depends(require_roles("admin"))])
    app.include_router(fhir_api.router, dependencies=[Depends(require_fhir_reader)])
    app.include_router(self_router(app))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_exception_handler(pages.LoginRequired, _login_required)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(AuditMiddleware, database_url=settings.resolved_database_url)
    app.add_middleware(RequestLogMiddleware)
    return app


def create_ops_app(settings: Settings) -> FastAPI:
    """Only /healthz, /readyz and /metrics: the ops listener of `xraygate scp` / `worker`."""
    app = FastAPI(title="xraygate ops", docs_url=None, redoc_url=None, openapi_url=None)
    app.dependency_overrides[get_settings] = lambda: settings
    app.state.authenticator = Authenticator.from_settings(settings)
    app.include_router(operations_router(settings))
    return app


# --- operations --------------------------------------------------------------------------------


def operations_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=None, responses={503: {}})
    def readyz() -> JSONResponse:
        """Readiness: database, object store, and an emitting model whose artifact is stored."""
        checks = readiness(settings)
        ready = all(value == "ok" for key, value in checks.items() if key != "model_version")
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    guard = [Depends(require_roles("admin"))] if settings.metrics_auth else []

    @router.get("/metrics", response_class=Response, dependencies=guard)
    def prometheus_metrics() -> Response:
        """Prometheus metrics of the whole pipeline."""
        try:
            refresh_queue_metrics(db.get_engine(settings.resolved_database_url))
        except Exception:  # the process metrics still answer when the database does not
            log.warning("queue metrics could not be read", exc_info=True)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def readiness(settings: Settings) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with db.get_engine(settings.resolved_database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports, never raises
        checks["database"] = f"error: {type(exc).__name__}"
    store: ObjectStore | None = None
    try:
        store = store_from_settings(settings)
        store.check()
        checks["object_store"] = "ok"
    except XraygateError as exc:
        checks["object_store"] = f"error: {type(exc).__name__}"
    checks.update(_model_check(settings, store) if checks["database"] == "ok" else {})
    return checks


def _model_check(settings: Settings, store: ObjectStore | None) -> dict[str, str]:
    try:
        with db.read_session(db.get_engine(settings.resolved_database_url)) as session:
            query = select(ModelVersion)
            if settings.model_policy == "best-auroc":
                query = query.where(
                    col(ModelVersion.state) != ModelState.RETIRED,
                    col(ModelVersion.auroc).is_not(None),
                ).order_by(col(ModelVersion.auroc).desc(), col(ModelVersion.id).desc())
            else:
                query = query.where(col(ModelVersion.state) == ModelState.ACTIVE)
            row = session.scalars(query).first()
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


# --- who am I, and the API description ---------------------------------------------------------


def self_router(app: FastAPI) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["session"])

    @router.get("/me")
    def me(principal: PrincipalDep) -> dict[str, Any]:
        """The authenticated caller and its roles."""
        return {
            "subject": principal.subject,
            "roles": sorted(principal.roles),
            "method": principal.method,
            "fhir_types": sorted(principal.fhir_types),
        }

    @router.get("/openapi.json", dependencies=[Depends(current_principal)])
    def openapi() -> dict[str, Any]:
        """This API's OpenAPI description."""
        return app.openapi()

    return router


# --- errors ------------------------------------------------------------------------------------

_API_PREFIXES = ("/api/", "/fhir", "/metrics", "/healthz", "/readyz", "/static")


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, pages.LoginRequired)
    return pages.login_redirect(exc.next_url)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (401, 403):
        metrics.AUTH_FAILURES.labels(
            "unauthenticated" if exc.status_code == 401 else "forbidden"
        ).inc()
    path = request.url.path
    if path.startswith("/fhir"):
        code = {401: "login", 403: "forbidden", 404: "not-found"}.get(exc.status_code, "processing")
        body = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": str(exc.detail)}],
        }
        return Response(
            json.dumps(body),
            status_code=exc.status_code,
            media_type="application/fhir+json",
            headers=exc.headers,
        )
    if not path.startswith(_API_PREFIXES):
        return pages.render(
            request, "error.html", exc.status_code, status=exc.status_code, detail=exc.detail
        )
    return await http_exception_handler(request, exc)


# --- request log and HTTP metrics --------------------------------------------------------------


class RequestLogMiddleware:
    """One log line and metrics per request: the route template (never the path, which may hold
    UIDs), method, status and duration; the correlation id is the study's where there is one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        set_correlation(uuid.uuid4().hex[:12])
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            study_uid = scope.get("path_params", {}).get("study_uid")
            if study_uid:
                set_correlation(correlation_id(str(study_uid)))
            metrics.HTTP_REQUESTS.labels(
                template, scope["method"], f"{status['code'] // 100}xx"
            ).inc()
            metrics.HTTP_SECONDS.labels(template).observe(elapsed)
            if template not in ("/healthz", "/readyz", "/metrics"):
                log.info(
                    "%s %s -> %d in %.1f ms",
                    scope["method"],
                    template,
                    status["code"],
                    elapsed * 1000,
                )
