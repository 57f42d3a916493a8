"""The request log and HTTP metrics: one log line and metrics per request with the route template
(never the path, which may hold UIDs), method, status and duration; the correlation id is the
study's where the route names one."""

from __future__ import annotations

import logging
import uuid

from starlette.types import Scope

from xraygate.core import metrics
from xraygate.core.logging import correlation_id, set_correlation
from xraygate.gateway.middleware.observe import ObservingMiddleware

log = logging.getLogger("xraygate.gateway")
QUIET = frozenset({"/healthz", "/readyz", "/metrics"})  # counted, not logged


class RequestLogMiddleware(ObservingMiddleware):
    def before(self, scope: Scope) -> None:
        set_correlation(uuid.uuid4().hex[:12])

    async def after(self, scope: Scope, status: int, seconds: float) -> None:
        template = getattr(scope.get("route"), "path", "unmatched")
        study_uid = scope.get("path_params", {}).get("study_uid")
        if study_uid:
            set_correlation(correlation_id(str(study_uid)))
        metrics.HTTP_REQUESTS.labels(template, scope["method"], f"{status // 100}xx").inc()
        metrics.HTTP_SECONDS.labels(template).observe(seconds)
        if template not in QUIET:
            log.info("%s %s -> %d in %.1f ms", scope["method"], template, status, seconds * 1000)
