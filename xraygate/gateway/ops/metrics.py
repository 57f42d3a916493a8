"""``/metrics``: the Prometheus metrics of the whole pipeline, with gauges read from the database
at scrape time: queue depth and age per job kind, model versions, the distribution of emitted
results (categories, score deciles), and each model version's quality and drift
(:mod:`xraygate.core.quality.gauges`)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, case, func, select
from sqlmodel import Session, col

from xraygate.core import metrics
from xraygate.core.db import read_session
from xraygate.core.jobs import JobKind
from xraygate.core.models import Job, JobState, ModelVersion, StudyResult, utcnow
from xraygate.core.quality.gauges import refresh_quality_metrics
from xraygate.gateway.deps import EngineDep, SettingsDep
from xraygate.gateway.errors import JsonRoute

log = logging.getLogger("xraygate.gateway")
router = APIRouter(route_class=JsonRoute)
QUALITY_GAUGES = "quality_gauges"  # app.state flag: this app publishes the quality gauges


@router.get("/metrics", response_class=Response)
def prometheus_metrics(request: Request, engine: EngineDep, settings: SettingsDep) -> Response:
    """Prometheus metrics of the whole pipeline; the gateway adds each model version's quality
    from clinicians' labels over ``XRAYGATE_QUALITY_WINDOW_DAYS`` (refreshed at most every
    minute; not the ops listeners of scp / worker, so that one series exists per version)."""
    try:
        refresh_queue_metrics(engine)
        if getattr(request.app.state, QUALITY_GAUGES, False):
            refresh_quality_metrics(engine, settings.quality_window_days, settings.model_policy)
    except Exception:  # the process metrics still answer when the database does not
        log.warning("queue metrics could not be read", exc_info=True)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def refresh_queue_metrics(engine: Engine) -> None:
    with read_session(engine) as session:
        _queue(session)
        _models(session)
        _results(session)


def _queue(session: Session) -> None:
    now = utcnow()
    depth = session.execute(
        select(col(Job.kind), col(Job.state), func.count())
        .where(col(Job.state).in_([JobState.PENDING, JobState.RUNNING, JobState.DEAD]))
        .group_by(col(Job.kind), col(Job.state))
    ).all()
    oldest = session.execute(
        select(col(Job.kind), func.min(col(Job.created_at)))
        .where(col(Job.state) == JobState.PENDING)
        .group_by(col(Job.kind))
    ).all()
    # Every kind and state has a series, 0 when empty: a dashboard or an alert on an empty queue
    # reads 0 rather than "no data".
    counts = {(str(kind), str(state)): int(count) for kind, state, count in depth}
    metrics.QUEUE_DEPTH.clear()
    for kind in {*(k.value for k in JobKind), *(k for k, _ in counts)}:
        for state in (JobState.PENDING, JobState.RUNNING, JobState.DEAD):
            value = counts.get((kind, state.value), 0)
            metrics.QUEUE_DEPTH.labels(kind=kind, state=state.value).set(value)
    metrics.QUEUE_OLDEST_AGE.clear()
    for kind_name in JobKind:
        metrics.QUEUE_OLDEST_AGE.labels(kind=kind_name.value).set(0)
    for kind, created in oldest:
        if created.tzinfo is None:
            created = created.replace(tzinfo=now.tzinfo)
        metrics.QUEUE_OLDEST_AGE.labels(kind=kind).set((now - created).total_seconds())


def _models(session: Session) -> None:
    metrics.MODEL_INFO.clear()
    for row in session.scalars(select(ModelVersion)):
        metrics.MODEL_INFO.labels(model=row.label, state=row.state).set(1)


def _results(session: Session) -> None:
    emitted = col(StudyResult.shadow).is_(False)
    by_category = session.execute(
        select(col(StudyResult.category), func.count())
        .where(emitted)
        .group_by(col(StudyResult.category))
    ).all()
    metrics.STUDIES_BY_CATEGORY.clear()
    for category, count in by_category:
        metrics.STUDIES_BY_CATEGORY.labels(category=category).set(count)
    score = col(StudyResult.score)
    decile = case(*[(score < (n + 1) / 10, n) for n in range(9)], else_=9)
    counts = dict(
        session.execute(
            select(decile, func.count()).where(emitted, score.is_not(None)).group_by(decile)
        ).all()
    )
    for n in range(10):
        metrics.SCORE_DISTRIBUTION.labels(decile=f"{n / 10:.1f}").set(counts.get(n, 0))
