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
#: Method label values: anything else a client sends is counted as OTHER (bounded labels).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


class RequestLogMiddleware(ObservingMiddleware):
    def before(self, scope: Scope) -> None:
        set_correlation(uuid.uuid4().hex[:12])

    async def after(self, scope: Scope, status: int, seconds: float) -> None:
        template = getattr(scope.get("route"), "path", "unmatched")
        study_uid = scope.get("path_params", {}).get("study_uid")
        if study_uid:
            set_correlation(correlation_id(str(study_uid)))
        method = method_label(scope["method"])
        metrics.HTTP_REQUESTS.labels(template, method, f"{status // 100}xx").inc()
        metrics.HTTP_SECONDS.labels(template).observe(seconds)
        if template not in QUIET:
            log.info("%s %s -> %d in %.1f ms", method, template, status, seconds * 1000)
