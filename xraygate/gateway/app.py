"""The FastAPI applications, wired from the gateway's rooms: each router behind its roles.

================================  ==========================  ======================================
route                             who                         what (room)
================================  ==========================  ======================================
/healthz, /readyz                 anyone                      liveness, readiness (ops)
/metrics                          anyone (admin if            Prometheus metrics (ops)
                                  XRAYGATE_METRICS_AUTH)
/login, /logout, /, /static       anyone                      the login page, its assets (web)
/worklist, /studies/{uid}         clinician (session)         pages (web)
/admin                            admin (session)             page (web)
/api/worklist, /api/studies/...   clinician                   worklist, study, rendered images,
                                                              feedback (api)
/api/admin/...                    admin                       models, dead letters, settings, audit
/fhir/...                         ehr (scoped) or admin       FHIR R4 read API (fhir_api)
/api/me, /api/openapi.json        any authenticated caller    who am I, the API description (api)
/dicomweb/... (GET)               clinician or admin          QIDO-RS, WADO-RS (dicomweb)
/dicomweb/studies (POST)          modality                    STOW-RS, the SCP's ingest (dicomweb)
/docs, /redoc                     any authenticated caller    Swagger UI, ReDoc (web/docs.py)
/docs/assets                      anyone                      their vendored JS/CSS
================================  ==========================  ======================================

Shared by every room: ``deps`` (database, queue, store, caller, roles, the audit flag),
``errors`` (refusals and their bodies), ``auth`` (credentials, ``Role``) and ``views`` (read
models). ``middleware`` holds the request log and the audit trail.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

import xraygate
from xraygate.core.config import Settings, get_settings
from xraygate.core.errors import ConfigurationError
from xraygate.core.secret_policy import check_secrets
from xraygate.gateway import errors, fhir_api, ops
from xraygate.gateway.api import admin, clinical, deid_review, feedback, quality, session
from xraygate.gateway.auth import Authenticator, Role
from xraygate.gateway.deps import require, require_fhir_reader
from xraygate.gateway.dicomweb import routes as dicomweb_routes
from xraygate.gateway.dicomweb import stow as dicomweb_stow
from xraygate.gateway.middleware.audit import AuditMiddleware
from xraygate.gateway.middleware.headers import SecurityHeadersMiddleware
from xraygate.gateway.middleware.limits import BodyLimitMiddleware
from xraygate.gateway.middleware.request_log import RequestLogMiddleware
from xraygate.gateway.ops.metrics import QUALITY_GAUGES
from xraygate.gateway.web import docs, pages, sso
from xraygate.gateway.web.render import STATIC, HtmlRoute

# The body limit's setting under each path prefix (http_max_body_bytes elsewhere): STOW-RS
# carries whole studies. The middleware enforces these; the OpenAPI 413 entries name them.
BODY_LIMITS = {f"{dicomweb_routes.PREFIX}/": "dicomweb_max_request_bytes"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = _bare_app(
        settings,
        title="xraygate",
        version=xraygate.__version__,
        description="AI triage of chest X-rays (demonstration model, not for clinical use).",
    )
    app.include_router(ops.router(settings))
    setattr(app.state, QUALITY_GAUGES, True)  # per-version quality gauges from the gateway only
    app.include_router(pages.router)
    app.include_router(sso.router)
    app.state.sso = sso.Sso.from_settings(settings)  # a bad OIDC setting fails at start-up
    clinician = [Depends(require(Role.CLINICIAN))]
    app.include_router(clinical.router, dependencies=clinician)
    app.include_router(feedback.router, dependencies=clinician)
    app.include_router(admin.router, dependencies=[Depends(require(Role.ADMIN))])
    app.include_router(deid_review.router, dependencies=[Depends(require(Role.ADMIN))])
    app.include_router(quality.router, dependencies=[Depends(require(Role.ADMIN))])
    app.include_router(fhir_api.public_router)  # metadata, CodeSystem: no token (SMART)
    app.include_router(fhir_api.read_router, dependencies=[Depends(require_fhir_reader)])
    app.include_router(
        dicomweb_routes.router, dependencies=[Depends(require(Role.CLINICIAN, Role.ADMIN))]
    )
    app.include_router(dicomweb_stow.router, dependencies=[Depends(require(Role.MODALITY))])
    app.include_router(session.router)
    app.include_router(docs.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    docs.mount_assets(app)
    docs.document_errors(app, body_limits=BODY_LIMITS)

    errors.install(app, fallback=HtmlRoute)
    app.add_middleware(AuditMiddleware, database_url=settings.resolved_database_url)
    app.add_middleware(RequestLogMiddleware)
    _guard(app, settings)
    return app


def create_ops_app(settings: Settings) -> FastAPI:
    """Only /healthz, /readyz and /metrics: the ops listener of `xraygate scp` / `worker`."""
    app = _bare_app(settings, title="xraygate ops")
    app.include_router(ops.router(settings))
    _guard(app, settings)
    return app


def _guard(app: FastAPI, settings: Settings) -> None:
    """The outermost layers, before any route, log or authentication: security headers on
    every answer, allowed Host headers, then the body limit (so an oversized body is refused
    before a byte of it is read)."""
    if settings.http_allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.http_allowed_hosts)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.http_max_body_bytes,
        per_prefix={prefix: getattr(settings, name) for prefix, name in BODY_LIMITS.items()},
    )
    app.add_middleware(SecurityHeadersMiddleware)


def _bare_app(settings: Settings, **info: str) -> FastAPI:
    """An app with no routes yet, using ``settings``; the authenticator is built now, so a bad
    key setting (a placeholder, a short HS256 key) fails at start-up."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **info)  # type: ignore[arg-type]

    async def these_settings() -> Settings:  # async: no hop to the thread pool per request
        return settings

    app.dependency_overrides[get_settings] = these_settings
    check_secrets(settings)
    if settings.http_trusted_proxies and not settings.fhir_base_url:
        raise ConfigurationError(
            "XRAYGATE_FHIR_BASE_URL is required when XRAYGATE_HTTP_TRUSTED_PROXIES is set "
            "(links must not be built from headers a client can send)"
        )
    app.state.authenticator = Authenticator.from_settings(settings)
    return app
