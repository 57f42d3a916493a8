"""Per-version quality and drift gauges for ``/metrics``, from the database at scrape time.

The figures are those of :func:`~.report.build_report` over the last
``XRAYGATE_QUALITY_WINDOW_DAYS`` (no intervals). They are recomputed when a result or a finding
was added since the last time (at most every :data:`MIN_SECONDS`), else every
:data:`REFRESH_SECONDS` (the window slides); a gauge without a value (too few labels, no
reference) is absent rather than 0. The alert rules in ``deploy/prometheus/alerts.yml`` read
them.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import timedelta
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import Engine, func, select
from sqlmodel import col

from xraygate.core import metrics
from xraygate.core.config import ModelPolicy
from xraygate.core.db import read_session
from xraygate.core.models import Feedback, StudyResult, utcnow
from xraygate.core.quality.report import build_report

REFRESH_SECONDS = 60.0
MIN_SECONDS = 5.0
_lock = threading.Lock()
_last: dict[str, tuple[float, tuple[object, ...]]] = {}  # engine URL -> (when, fingerprint)

PROPORTIONS: dict[str, Gauge] = {
    "agreement": metrics.MODEL_AGREEMENT,
    "sensitivity": metrics.MODEL_SENSITIVITY,
    "specificity": metrics.MODEL_SPECIFICITY,
    "ppv_high": metrics.MODEL_PPV_HIGH,
    "npv_low": metrics.MODEL_NPV_LOW,
    "indeterminate_share": metrics.MODEL_INDETERMINATE,
    "ood_share": metrics.MODEL_OOD,
}
ALL = [
    metrics.MODEL_RESULTS,
    metrics.MODEL_LABELLED,
    metrics.MODEL_AUROC,
    metrics.MODEL_ECE,
    metrics.MODEL_PSI,
    metrics.MODEL_KS,
    *PROPORTIONS.values(),
]


def refresh_quality_metrics(
    engine: Engine, window_days: float, policy: ModelPolicy = "active", *, force: bool = False
) -> None:
    """Update the gauges when the data changed or the window moved on (see the module doc)."""
    key = str(engine.url)
    mark = fingerprint(engine)
    with _lock:
        now = time.monotonic()
        when, seen = _last.get(key, (-math.inf, ()))
        changed = mark != seen and now - when >= MIN_SECONDS
        if not (force or changed or now - when >= REFRESH_SECONDS):
            return
        _last[key] = (now, mark)
    since = utcnow() - timedelta(days=window_days)
    report = build_report(engine, since=since, period="month", intervals=False, policy=policy)
    _last_result(engine)
    for gauge in ALL:
        gauge.clear()
    for version in report["versions"]:
        _set_version(version)


def fingerprint(engine: Engine) -> tuple[object, ...]:
    """Changes when a study result or a clinician's finding is added or updated."""
    with read_session(engine) as session:
        results = session.execute(
            select(func.count(), func.max(col(StudyResult.updated_at))).select_from(StudyResult)
        ).one()
        findings = session.execute(select(func.max(col(Feedback.id)))).scalar()
    return (*results, findings)


def _set_version(version: dict[str, Any]) -> None:
    labels = {"model_version": version["model_version"], "state": version["state"]}
    totals = version["totals"]
    metrics.MODEL_RESULTS.labels(**labels).set(totals["n_results"])
    metrics.MODEL_LABELLED.labels(**labels).set(totals["n_labelled"])
    for key, gauge in PROPORTIONS.items():
        value = totals[key]["value"]
        if value is not None:
            gauge.labels(**labels).set(value)
    if totals["auroc"]:
        metrics.MODEL_AUROC.labels(**labels).set(totals["auroc"]["value"])
    if totals["calibration"]:
        metrics.MODEL_ECE.labels(**labels).set(totals["calibration"]["ece"])
    if totals["drift"]:
        metrics.MODEL_PSI.labels(**labels).set(totals["drift"]["psi"])
        metrics.MODEL_KS.labels(**labels).set(totals["drift"]["ks"])


def _last_result(engine: Engine) -> None:
    with read_session(engine) as session:
        newest = session.scalar(
            select(func.max(col(StudyResult.updated_at))).where(col(StudyResult.shadow).is_(False))
        )
    if newest is not None:
        metrics.LAST_RESULT.set(newest.timestamp())
