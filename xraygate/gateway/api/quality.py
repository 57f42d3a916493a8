"""Model quality for admins and quality teams: the performance report from clinicians' labels
(JSON, or FHIR R4 MeasureReports), and the promotion rule (its verdicts; applying it). Included
behind the ``admin`` role; promotions are audit records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from xraygate.core.config import Settings
from xraygate.core.quality.measure_report import bundle
from xraygate.core.quality.promotion import Verdict, promote, verdicts
from xraygate.core.quality.report import PERIODS, Period, build_report, parse_since
from xraygate.gateway.auth import Principal, Role
from xraygate.gateway.deps import EngineDep, SettingsDep, require
from xraygate.gateway.errors import FHIR_JSON, BadRequest, JsonRoute, fhir_json

router = APIRouter(prefix="/api/admin/models", tags=["admin", "quality"], route_class=JsonRoute)
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
ModelRef = Annotated[
    str | None,
    Query(max_length=160, pattern=r"^[A-Za-z0-9._-]+:[A-Za-z0-9._-]+$", description="NAME:VERSION"),
]
Since = Annotated[
    str | None, Query(max_length=40, description="a date, an ISO timestamp, or 30d / 12h ago")
]


def _since(value: str | None) -> datetime | None:
    try:
        return parse_since(value)
    except ValueError:
        raise BadRequest("since: a date, an ISO timestamp, or Nd / Nh") from None


def report_of(
    engine: Any, settings: Settings, model: str | None, since: str | None, period: Period
) -> dict[str, Any]:
    if period not in PERIODS:
        raise BadRequest(f"period: one of {', '.join(PERIODS)}")
    return build_report(
        engine, model=model, since=_since(since), period=period, policy=settings.model_policy
    )


@router.get("/report")
def quality_report(
    engine: EngineDep,
    settings: SettingsDep,
    model: ModelRef = None,
    since: Since = None,
    period: Period = "week",
) -> dict[str, Any]:
    """Per version and period: sensitivity, specificity, PPV of high, NPV of low, agreement,
    indeterminate and out-of-distribution shares, AUROC, calibration, drift, with 95 %
    intervals; every other version paired with the active one on the same labelled studies."""
    return report_of(engine, settings, model, since, period)


@router.get("/report/fhir", response_class=Response, responses={200: {"content": {FHIR_JSON: {}}}})
def quality_measure_reports(
    engine: EngineDep,
    settings: SettingsDep,
    model: ModelRef = None,
    since: Since = None,
    period: Period = "week",
) -> Response:
    """The report as a FHIR R4 Bundle of MeasureReports (one per version)."""
    report = report_of(engine, settings, model, since, period)
    return fhir_json(bundle(report, settings.fhir_system_base))


def _verdict(v: Verdict) -> dict[str, Any]:
    return {
        "baseline": v.baseline,
        "candidate": v.candidate,
        "n_paired": v.n_paired,
        "agreement": list(v.agreement),
        "sensitivity": list(v.sensitivity),
        "promote": v.promote,
        "reason": v.reason,
    }


@router.get("/promotion")
def promotion_verdicts(engine: EngineDep, settings: SettingsDep) -> list[dict[str, Any]]:
    """The promotion rule's verdict for each shadow version against the active one."""
    found = verdicts(engine, settings.model_promote_min_paired, settings.model_policy)
    return [_verdict(v) for v in found]


@router.post("/promote")
def apply_promotion(engine: EngineDep, settings: SettingsDep, principal: Admin) -> dict[str, Any]:
    """Apply the rule now: the best passing shadow version becomes active (audited)."""
    found = verdicts(engine, settings.model_promote_min_paired, settings.model_policy)
    passing = [v for v in found if v.promote]
    if not passing:
        return {"promoted": None}
    best = max(passing, key=lambda v: (v.sensitivity[1] or 0.0, v.agreement[1] or 0.0))
    promote(engine, best, actor=principal.subject, via="api")
    return {"promoted": _verdict(best)}
