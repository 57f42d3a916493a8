"""The performance report as FHIR R4 MeasureReport resources, for quality teams.

One ``summary`` MeasureReport per model version (subject: the version, by the same identifier as
its FHIR Device), with one group per figure: the group's populations are the denominator and
numerator counts, ``measureScore`` the proportion (or AUROC / ECE), a 95 % confidence interval
as an extension (``valueRange``), and a stratifier by period (day, ISO week or month). The
``measure`` is a canonical URL of our own (no Measure resource is served); codes come from our
code system ``<base>/CodeSystem/ai-quality``. Validated by ``fhir.resources`` here and against
the official R4 JSON schema in the tests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.measurereport import MeasureReport

from xraygate.core.quality.measures import Json

POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
IMPROVEMENT = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
UCUM = "http://unitsofmeasure.org"

#: figure key in the report -> (code, display)
PROPORTIONS = {
    "sensitivity": ("sensitivity-at-high", "Sensitivity at the high-risk threshold"),
    "specificity": ("specificity-at-high", "Specificity at the high-risk threshold"),
    "ppv_high": ("ppv-high", "Positive predictive value of a high-risk result"),
    "npv_low": ("npv-low", "Negative predictive value of a low-risk result"),
    "agreement": ("agreement", "Agreement of the triage category with the clinician"),
    "indeterminate_share": ("indeterminate-share", "Share of indeterminate results"),
    "ood_share": ("ood-share", "Share of results out of the model's training distribution"),
}


def measure_url(system_base: str) -> str:
    return f"{system_base}/Measure/ai-triage-performance"


def measure_reports(report: Json, system_base: str) -> list[Json]:
    """One MeasureReport per version of a :func:`~.report.build_report` report."""
    return [_one(version, report, system_base.rstrip("/")) for version in report["versions"]]


def bundle(report: Json, system_base: str) -> Json:
    """The MeasureReports in a ``collection`` Bundle."""
    body = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": report["generated_at"],
        "entry": [{"resource": r} for r in measure_reports(report, system_base)],
    }
    return Bundle.model_validate(body).model_dump(mode="json", exclude_none=True)


def _code(base: str, code: str, display: str) -> Json:
    return {"coding": [{"system": f"{base}/CodeSystem/ai-quality", "code": code}], "text": display}


def _one(version: Json, report: Json, base: str) -> Json:
    label = version["model_version"]
    periods = version["periods"]
    start = periods[0]["start"] if periods else report["generated_at"]
    groups = [
        _proportion_group(base, key, code, display, version["totals"], periods)
        for key, (code, display) in PROPORTIONS.items()
    ]
    groups += _score_groups(base, version["totals"])
    body: Json = {
        "resourceType": "MeasureReport",
        "id": _id(label, report),
        "status": "complete",
        "type": "summary",
        "measure": measure_url(base),
        "subject": {"identifier": {"system": f"{base}/model", "value": label}, "display": label},
        "date": report["generated_at"],
        "period": {"start": report["since"] or start, "end": report["generated_at"]},
        "improvementNotation": {"coding": [{"system": IMPROVEMENT, "code": "increase"}]},
        "group": groups,
    }
    if version.get("demo"):
        body["extension"] = [
            {
                "url": f"{base}/StructureDefinition/demo-model",
                "valueBoolean": True,
            }
        ]
    return MeasureReport.model_validate(body).model_dump(mode="json", exclude_none=True)


def _id(label: str, report: Json) -> str:
    safe = "".join(c if c.isalnum() or c in "-." else "-" for c in label)
    stamp = datetime.fromisoformat(report["generated_at"]).strftime("%Y%m%d%H%M%S")
    return f"{safe}-{stamp}"[:64]


def _score(value: float | None) -> Json | None:
    if value is None:
        return None
    return {"value": value, "unit": "1", "system": UCUM, "code": "1"}


def _interval(base: str, ci: list[float] | None) -> list[Json] | None:
    if not ci:
        return None
    return [
        {
            "url": f"{base}/StructureDefinition/confidence-interval-95",
            "valueRange": {"low": {"value": ci[0]}, "high": {"value": ci[1]}},
        }
    ]


def _populations(figure: Json) -> list[Json]:
    return [
        {"code": {"coding": [{"system": POPULATION, "code": "denominator"}]}, "count": figure["n"]},
        {"code": {"coding": [{"system": POPULATION, "code": "numerator"}]}, "count": figure["k"]},
    ]


def _proportion_group(
    base: str, key: str, code: str, display: str, totals: Json, periods: list[Json]
) -> Json:
    figure = totals[key]
    group: Json = {
        "code": _code(base, code, display),
        "population": _populations(figure),
        "measureScore": _score(figure["value"]),
        "extension": _interval(base, figure["ci95"]),
        "stratifier": [
            {
                "code": [{"text": "period"}],
                "stratum": [
                    {
                        "value": {"text": p["period"]},
                        "population": _populations(p[key]),
                        "measureScore": _score(p[key]["value"]),
                        "extension": _interval(base, p[key]["ci95"]),
                    }
                    for p in periods
                ],
            }
        ]
        if periods
        else None,
    }
    stripped: Json = _strip(group)
    return stripped


def _score_groups(base: str, totals: Json) -> list[Json]:
    out = []
    auroc = totals.get("auroc")
    if auroc:
        out.append(
            {
                "code": _code(base, "auroc", "Area under the ROC curve"),
                "population": [
                    {
                        "code": {"coding": [{"system": POPULATION, "code": "initial-population"}]},
                        "count": auroc["n"],
                    }
                ],
                "measureScore": _score(auroc["value"]),
                "extension": _interval(base, auroc["ci95"]),
            }
        )
    calibration = totals.get("calibration")
    if calibration:
        out.append(
            {
                "code": _code(base, "ece", "Expected calibration error (10 bins)"),
                "population": [
                    {
                        "code": {"coding": [{"system": POPULATION, "code": "initial-population"}]},
                        "count": calibration["n"],
                    }
                ],
                "measureScore": _score(calibration["ece"]),
                "extension": _interval(base, calibration["ece_ci95"]),
            }
        )
    return [_strip(g) for g in out]


def _strip(value: Any) -> Any:
    """Drop None values (FHIR JSON has no nulls)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value
