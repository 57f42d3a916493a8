"""The quality report from the database (SQLite and PostgreSQL), against scikit-learn on the same
labels; periods, pairing, the promotion rule (audited) and the FHIR MeasureReport (R4 schema)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydicom.uid import generate_uid
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from sqlalchemy import Engine, select
from sqlmodel import col

from tests.fhir.r4schema import r4_errors
from xraygate.core import db
from xraygate.core.models import (
    AuditRecord,
    Feedback,
    ModelVersion,
    Patient,
    Study,
    StudyResult,
)
from xraygate.core.quality import report as quality
from xraygate.core.quality.measure_report import bundle
from xraygate.core.quality.promotion import promote, verdicts

A, B = "site-cxr:1", "site-cxr:2"
QUANTILES = [round(float(q), 6) for q in np.linspace(0, 1, 101) ** 2]
WEEK1 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday: ISO week 2026-W02


def category(score: float | None) -> str:
    if score is None:
        return "indeterminate"
    return "high" if score > 0.8 else "low" if score < 0.6 else "indeterminate"


@dataclass
class Truth:
    """What was written, to recompute every figure independently."""

    labels: dict[str, int] = field(default_factory=dict)  # study uid -> latest label
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)  # version -> uid
    weeks: dict[str, str] = field(default_factory=dict)


def _versions(engine: Engine) -> None:
    with db.write_session(engine) as s:
        for label, state in ((A, "active"), (B, "shadow")):
            name, _, version = label.partition(":")
            s.add(
                ModelVersion(
                    name=name,
                    version=version,
                    sha256=("a" if state == "active" else "b") * 64,
                    object_key=f"models/{name}/{version}/model.keras",
                    manifest={
                        "thresholds": {"high": 0.8, "low": 0.6},
                        "reference": {"score_quantiles": QUANTILES},
                        "demo": False,
                    },
                    state=state,
                )
            )


def populate(engine: Engine, n: int = 80, seed: int = 4) -> Truth:
    """``n`` studies over two weeks read by A (active) and B (shadow, better); clinicians label
    three quarters of them, some twice (the latest finding counts); a few are out of
    distribution for A (no score). One transaction."""
    _versions(engine)
    rng = np.random.default_rng(seed)
    truth = Truth(scores={A: {}, B: {}})
    with db.write_session(engine) as s:
        patient = Patient(patient_key="HOSP|P1", patient_id="P1", issuer="HOSP")
        s.add(patient)
        s.flush()
        for i in range(n):
            label = int(rng.random() < 0.45)
            a = float(np.clip(0.3 + 0.35 * label + rng.normal(0, 0.22), 0, 1))
            b = float(np.clip(0.25 + 0.5 * label + rng.normal(0, 0.15), 0, 1))
            a_score: float | None = None if i % 17 == 5 else a
            study = Study(study_instance_uid=generate_uid(), patient_pk=patient.id)
            s.add(study)
            s.flush()
            uid = study.study_instance_uid
            when = WEEK1 + timedelta(days=int(i % 12), hours=i % 5)
            for version, score in ((A, a_score), (B, b)):
                s.add(
                    StudyResult(
                        study_pk=study.id,
                        study_instance_uid=uid,
                        model_version=version,
                        model_sha256="a" * 64,
                        score=score,
                        category=category(score),
                        reason="" if score is not None else "out-of-distribution",
                        ood_distance=0.4 if score is not None else 2.5,
                        thresholds={"high": 0.8, "low": 0.6},
                        shadow=version == B,
                        created_at=when,
                    )
                )
                truth.scores[version][uid] = score
            if i % 4 != 3:  # labelled
                findings = [label] if i % 7 else [1 - label, label]  # corrected: latest wins
                for finding in findings:
                    s.add(
                        Feedback(
                            study_pk=study.id,
                            study_instance_uid=uid,
                            finding="confirm" if finding else "reject",
                            label="PNEUMONIA" if finding else "NORMAL",
                            agreement="agree",
                            model_version=A,
                        )
                    )
                    s.flush()  # ids in finding order
                truth.labels[uid] = label
            truth.weeks[uid] = "2026-W02" if when.day < 12 else "2026-W03"
    return truth


def expected(truth: Truth, version: str, uids: list[str] | None = None) -> dict[str, float]:
    """The figures, computed with scikit-learn from what was written."""
    scores = truth.scores[version]
    uids = [u for u in (uids or list(scores)) if u in truth.labels]
    y = np.array([truth.labels[u] for u in uids])
    cats = np.array([category(scores[u]) for u in uids])
    high, low = cats == "high", cats == "low"
    scored = [i for i, u in enumerate(uids) if scores[u] is not None]
    ys, ss = y[scored], np.array([scores[uids[i]] for i in scored], dtype=float)
    observed, predicted = calibration_curve(ys, ss, n_bins=10, strategy="uniform")
    counts = np.histogram(ss, bins=np.linspace(0, 1, 11))[0]
    counts = counts[counts > 0]
    return {
        "sensitivity": recall_score(y, high),
        "specificity": recall_score(1 - y, ~high),
        "ppv_high": precision_score(y, high),
        "npv_low": precision_score(1 - y[low], np.ones(low.sum())),
        "agreement": float(np.mean((high & (y == 1)) | (low & (y == 0)))),
        "auroc": roc_auc_score(ys, ss),
        "ece": float(np.sum(counts / counts.sum() * np.abs(predicted - observed))),
        "n_labelled": len(uids),
    }


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
