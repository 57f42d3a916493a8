"""Queue depth and age gauges, read from the jobs table at scrape time."""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from sqlmodel import col

from xraygate.core import metrics
from xraygate.core.db import read_session
from xraygate.core.models import Job, JobState, utcnow


def refresh_queue_metrics(engine: Engine) -> None:
    now = utcnow()
    with read_session(engine) as session:
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
    metrics.QUEUE_DEPTH.clear()
    for kind, state, count in depth:
        metrics.QUEUE_DEPTH.labels(kind=kind, state=state).set(count)
    metrics.QUEUE_OLDEST_AGE.clear()
    for kind, created in oldest:
        if created.tzinfo is None:
            created = created.replace(tzinfo=now.tzinfo)
        metrics.QUEUE_OLDEST_AGE.labels(kind=kind).set((now - created).total_seconds())
