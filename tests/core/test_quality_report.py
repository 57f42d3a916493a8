"""The quality report from the database (SQLite and PostgreSQL), against scikit-learn on the same
labels; periods, pairing, the promotion rule (audited) and the FHIR MeasureReport (R4 schema)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from tests.fhir.r4schema import r4_errors
from tests.quality_factory import WEEK1, A, B, expected, populate
from xraygate.core import db
from xraygate.core.models import (
    AuditRecord,
    ModelVersion,
    StudyResult,
)
from xraygate.core.quality import report as quality
from xraygate.core.quality.measure_report import bundle
from xraygate.core.quality.promotion import promote, verdicts


def test_report_equals_sklearn_per_version_and_period(database_url: str) -> None:
    db.upgrade(database_url)
    engine = db.get_engine(database_url)
    truth = populate(engine)
    data = quality.build_report(engine, period="week")
    by_version = {v["model_version"]: v for v in data["versions"]}
    assert set(by_version) == {A, B}
    for version in (A, B):
        figures, want = by_version[version]["totals"], expected(truth, version)
        assert figures["n_results"] == 80 and figures["n_labelled"] == want["n_labelled"] == 60
        for key in ("sensitivity", "specificity", "ppv_high", "npv_low", "agreement"):
            assert figures[key]["value"] == pytest.approx(want[key], abs=1e-6), (version, key)
            low, high = figures[key]["ci95"]
            assert low <= figures[key]["value"] <= high
        assert figures["auroc"]["value"] == pytest.approx(want["auroc"], abs=1e-6)
        assert figures["auroc"]["ci95"][0] < figures["auroc"]["value"] < figures["auroc"]["ci95"][1]
        assert figures["calibration"]["ece"] == pytest.approx(want["ece"], abs=1e-6)
        assert len(figures["calibration"]["bins"]) == 10
        assert figures["drift"]["n"] == sum(s is not None for s in truth.scores[version].values())
        weeks = [p["period"] for p in by_version[version]["periods"]]
        assert weeks == ["2026-W02", "2026-W03"]
        for period in by_version[version]["periods"]:
            uids = [u for u, w in truth.weeks.items() if w == period["period"]]
            want_week = expected(truth, version, uids)
            assert period["n_labelled"] == want_week["n_labelled"]
            assert period["sensitivity"]["value"] == pytest.approx(want_week["sensitivity"])
        assert sum(p["n_results"] for p in by_version[version]["periods"]) == 80
    ood = by_version[A]["totals"]["ood_share"]
    assert ood["k"] == sum(s is None for s in truth.scores[A].values()) and ood["n"] == 80
    [pair] = data["paired"]
    assert (pair["baseline"], pair["candidate"], pair["n_paired"]) == (A, B, 60)
    diff = pair["difference"]["sensitivity"]
    want_diff = expected(truth, B)["sensitivity"] - expected(truth, A)["sensitivity"]
    assert diff["value"] == pytest.approx(want_diff, abs=1e-6)
    assert diff["ci95"][0] <= diff["value"] <= diff["ci95"][1]


def test_since_and_one_version(sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    engine = db.get_engine(sqlite_url)
    truth = populate(engine, n=40)
    since = WEEK1 + timedelta(days=7)
    data = quality.build_report(engine, model=B, since=since, period="day", intervals=False)
    [version] = data["versions"]
    late = [u for u, w in truth.weeks.items() if w == "2026-W03"]
    assert version["model_version"] == B and version["totals"]["n_results"] == len(late)
    assert all(p["period"] >= "2026-01-12" for p in version["periods"])


def test_promotion_rule_promotes_the_better_shadow_and_audits(sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    engine = db.get_engine(sqlite_url)
    populate(engine)
    [waiting] = verdicts(engine, min_paired=61)
    assert not waiting.promote and waiting.reason == "60 < 61 paired"
    [verdict] = verdicts(engine, min_paired=60)
    assert verdict.promote, verdict.reason
    assert verdict.sensitivity[1] > verdict.sensitivity[0]  # type: ignore[operator]
    assert verdict.agreement[1] >= verdict.agreement[0]  # type: ignore[operator]
    promote(engine, verdict, actor="test", via="job")
    with db.read_session(engine) as s:
        states = {r.label: r.state for r in s.scalars(select(ModelVersion))}
        [event] = s.scalars(select(AuditRecord).where(col(AuditRecord.route) == "model promote"))
    assert states == {A: "retired", B: "active"}
    assert event.path == B and event.method == "MODEL" and event.status == 200
    assert event.query.startswith(f"replaces {A}: on 60 paired labelled studies")
    assert verdicts(engine, min_paired=1) == []  # no shadow left


def test_measure_report_is_valid_fhir_r4(sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    engine = db.get_engine(sqlite_url)
    populate(engine, n=40)
    data = quality.build_report(engine)
    body = bundle(data, "https://xraygate.example.org/fhir")
    assert r4_errors(body) == []
    reports = [e["resource"] for e in body["entry"]]
    assert [r["subject"]["identifier"]["value"] for r in reports] == [A, B]
    for resource in reports:
        assert r4_errors(resource) == []
        groups = {g["code"]["coding"][0]["code"]: g for g in resource["group"]}
        assert {"sensitivity-at-high", "agreement", "auroc", "ece"} <= set(groups)
        label = resource["subject"]["display"]
        version = next(v for v in data["versions"] if v["model_version"] == label)
        sens = groups["sensitivity-at-high"]
        assert sens["measureScore"]["value"] == version["totals"]["sensitivity"]["value"]
        counts = {p["code"]["coding"][0]["code"]: p["count"] for p in sens["population"]}
        assert counts == {
            "denominator": version["totals"]["sensitivity"]["n"],
            "numerator": version["totals"]["sensitivity"]["k"],
        }
        assert [s["value"]["text"] for s in sens["stratifier"][0]["stratum"]] == [
            "2026-W02",
            "2026-W03",
        ]


def test_prometheus_gauges_per_version(sqlite_url: str) -> None:
    from prometheus_client import REGISTRY

    from xraygate.core.quality.gauges import refresh_quality_metrics

    db.upgrade(sqlite_url)
    engine = db.get_engine(sqlite_url)
    truth = populate(engine, n=40)
    with db.write_session(engine) as s:  # the results are "recent" for the window
        for row in s.scalars(select(StudyResult)):
            row.created_at = datetime.now(UTC) - timedelta(days=1)
            s.add(row)
    refresh_quality_metrics(engine, window_days=30, force=True)
    want = expected(truth, A)

    def gauge(name: str, version: str, state: str) -> float | None:
        labels = {"model_version": version, "state": state}
        return REGISTRY.get_sample_value(name, labels)

    assert gauge("xraygate_model_results", A, "active") == 40
    assert gauge("xraygate_model_labelled_studies", A, "active") == want["n_labelled"]
    assert gauge("xraygate_model_sensitivity_ratio", A, "active") == pytest.approx(
        want["sensitivity"], abs=1e-6
    )
    assert gauge("xraygate_model_agreement_ratio", B, "shadow") == pytest.approx(
        expected(truth, B)["agreement"], abs=1e-6
    )
    assert gauge("xraygate_model_auroc", A, "active") == pytest.approx(want["auroc"], abs=1e-6)
    assert gauge("xraygate_model_score_psi", B, "shadow") is not None
    assert REGISTRY.get_sample_value("xraygate_last_result_timestamp_seconds") is not None
