"""Operations: liveness and readiness probes (``probes``), Prometheus metrics (``metrics``); the
same router serves the main app and the ops listener of ``xraygate scp`` / ``worker``."""

from fastapi import APIRouter, Depends

from xraygate.core.config import Settings
from xraygate.gateway.auth import Role
from xraygate.gateway.deps import require
from xraygate.gateway.ops import metrics, probes


def router(settings: Settings) -> APIRouter:
    """Probes for anyone; metrics for anyone, or only admins when ``XRAYGATE_METRICS_AUTH``."""
    ops = APIRouter(tags=["operations"])
    ops.include_router(probes.router)
    guard = [Depends(require(Role.ADMIN))] if settings.metrics_auth else []
    ops.include_router(metrics.router, dependencies=guard)
    return ops


__all__ = ["router"]
