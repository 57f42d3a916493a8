"""Performance reports from clinicians' labels: per model version, per period, and paired.

A version's results are its study results (``not-applicable`` ones excluded); a study's label is
the clinician's **latest** finding (``feedback`` rows, newest first). Results fall in the period
(day, ISO week or month, UTC) in which the version first scored the study. Shadow versions score
the same studies as the emitting one, so :func:`build_report` also pairs every other version with
the emitting one on the labelled studies both have read. Figures: :mod:`.measures`.

Read by ``xraygate model report``, the gateway (admin page, JSON, FHIR MeasureReport, Prometheus
gauges) and the promotion rule (:mod:`.promotion`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Engine, func, select
from sqlmodel import col

from xraygate.core.config import ModelPolicy
from xraygate.core.db import read_session
from xraygate.core.models import Category, Feedback, ModelVersion, StudyResult, utcnow
from xraygate.core.models.results import OOD_LIMIT, emitting_version
from xraygate.core.quality.measures import Json, Row, measure, paired

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")
LABEL_SOURCE = "clinician feedback (the latest finding per study)"


@dataclass(frozen=True)
class VersionInfo:
    label: str
    state: str
    demo: bool
    high: float | None
    score_quantiles: list[float]


@dataclass(frozen=True)
class Scored:
    version: str
    row: Row
    scored_at: datetime


def parse_since(value: str | None) -> datetime | None:
    """``2026-01-31`` or an ISO timestamp (UTC unless it says), or ``30d`` / ``12h`` ago.
    Raises ValueError for anything else."""
    if value is None or not value.strip():
        return None
    match = re.fullmatch(r"(\d{1,5})([dh])", value.strip())
    if match:
        amount = int(match.group(1))
        delta = timedelta(days=amount) if match.group(2) == "d" else timedelta(hours=amount)
        return utcnow() - delta
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def period_of(when: datetime, period: Period) -> tuple[str, datetime]:
    """The period's key and its start (UTC)."""
    day = datetime(when.year, when.month, when.day, tzinfo=when.tzinfo)
    if period == "day":
        return day.strftime("%Y-%m-%d"), day
    if period == "week":
        year, week, weekday = when.isocalendar()
        return f"{year}-W{week:02d}", day - timedelta(days=weekday - 1)
    return when.strftime("%Y-%m"), day.replace(day=1)


def versions(engine: Engine) -> dict[str, VersionInfo]:
    with read_session(engine) as session:
        rows = list(session.scalars(select(ModelVersion).order_by(col(ModelVersion.id))))
    out = {}
    for row in rows:
        manifest = row.manifest or {}
        reference = manifest.get("reference") or {}
        out[row.label] = VersionInfo(
            label=row.label,
            state=row.state,
            demo=bool(manifest.get("demo")),
            high=(manifest.get("thresholds") or {}).get("high"),
            score_quantiles=list(reference.get("score_quantiles") or []),
        )
    return out


def load(
    engine: Engine, *, since: datetime | None = None, model: str | None = None
) -> list[Scored]:
    """Every (version, study) result since ``since`` with the study's latest label."""
    latest = (
        select(func.max(col(Feedback.id)))
        .group_by(col(Feedback.study_instance_uid))
        .scalar_subquery()
    )
    labels_query = select(col(Feedback.study_instance_uid), col(Feedback.label)).where(
        col(Feedback.id).in_(latest)
    )
    query = select(StudyResult).where(col(StudyResult.category) != Category.NOT_APPLICABLE)
    if since is not None:
        query = query.where(col(StudyResult.created_at) >= since)
    if model is not None:
        query = query.where(col(StudyResult.model_version) == model)
    with read_session(engine) as session:
        labels = {uid: label for uid, label in session.execute(labels_query).all()}
        results = list(session.scalars(query.order_by(col(StudyResult.id))))
    out = []
    for r in results:
        label = labels.get(r.study_instance_uid)
        row = Row(
            study_uid=r.study_instance_uid,
            category=r.category,
            score=r.score,
            label=None if label is None else int(label == "PNEUMONIA"),
            ood=r.ood_distance is not None and r.ood_distance > OOD_LIMIT,
        )
        out.append(Scored(r.model_version, row, r.created_at))
    return out


def emitting_label(engine: Engine, policy: ModelPolicy = "active") -> str | None:
    """The version whose results are emitted (the pairing baseline), as the workers pick it."""
    with read_session(engine) as session:
        row = emitting_version(session, policy)
    return row.label if row is not None else None


def build_report(
    engine: Engine,
    *,
    model: str | None = None,
    since: datetime | None = None,
    period: Period = "week",
    intervals: bool = True,
    policy: ModelPolicy = "active",
) -> Json:
    """The whole report: every version's totals and periods, and every other version paired
    with the emitting one (``policy``: ``XRAYGATE_MODEL_POLICY``)."""
    info = versions(engine)
    scored = load(engine, since=since)
    by_version: dict[str, list[Scored]] = defaultdict(list)
    for item in scored:
        by_version[item.version].append(item)
    registered = [v for v in info if v in by_version]
    wanted = [model] if model else registered + sorted(set(by_version) - set(registered))
    out: Json = {
        "generated_at": utcnow().isoformat(timespec="seconds"),
        "since": since.isoformat(timespec="seconds") if since else None,
        "period": period,
        "label_source": LABEL_SOURCE,
        "definitions": "xraygate.core.quality.measures",
        "versions": [
            _version(info.get(label), label, by_version.get(label, []), period, intervals)
            for label in wanted
        ],
        "paired": [],
    }
    baseline = emitting_label(engine, policy)
    if baseline is not None:
        base_rows = [s.row for s in by_version.get(baseline, [])]
        others = [v for v in wanted if v != baseline and v in by_version]
        for label in others:
            comparison = paired(base_rows, [s.row for s in by_version[label]], intervals=intervals)
            out["paired"].append({"baseline": baseline, "candidate": label, **comparison})
    return out


def _version(
    info: VersionInfo | None, label: str, items: list[Scored], period: Period, intervals: bool
) -> Json:
    quantiles = info.score_quantiles if info else []
    groups: dict[str, list[Scored]] = defaultdict(list)
    starts: dict[str, datetime] = {}
    for item in items:
        key, start = period_of(item.scored_at, period)
        groups[key].append(item)
        starts[key] = start
    return {
        "model_version": label,
        "state": info.state if info else "unregistered",
        "demo": info.demo if info else False,
        "high_threshold": info.high if info else None,
        "totals": measure([i.row for i in items], quantiles, intervals=intervals),
        "periods": [
            {
                "period": key,
                "start": starts[key].isoformat(timespec="seconds"),
                **measure([i.row for i in groups[key]], quantiles, intervals=intervals),
            }
            for key in sorted(groups)
        ],
    }
