"""The FastAPI application: probes and metrics; each API is a router included here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

import xraygate
from xraygate.core import db
from xraygate.core.config import Settings, get_settings
from xraygate.core.errors import XraygateError
from xraygate.core.storage import store_from_settings
from xraygate.gateway.queue_metrics import refresh_queue_metrics

SettingsDep = Annotated[Settings, Depends(get_settings)]


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="xraygate", version=xraygate.__version__)
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], response_model=None)
    def readyz(settings: SettingsDep) -> JSONResponse:
        """Readiness: the database and the object store answer."""
        checks = _readiness(settings)
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics(settings: SettingsDep) -> Response:
        """Prometheus metrics of the whole pipeline."""
        refresh_queue_metrics(db.get_engine(settings.resolved_database_url))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _readiness(settings: Settings) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    try:
        with db.get_engine(settings.resolved_database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports, never raises
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        store_from_settings(settings).check()
        checks["object_store"] = "ok"
    except XraygateError as exc:
        checks["object_store"] = f"error: {type(exc).__name__}"
    return checks
