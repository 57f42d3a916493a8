"""Quality-report fixtures: two model versions (A active, B shadow and better) reading the same
studies over two weeks, with clinicians' findings, written straight into the database; and the
figures recomputed from what was written with scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from pydicom.uid import generate_uid
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from sqlalchemy import Engine

from xraygate.core import db
from xraygate.core.models import Feedback, ModelVersion, Patient, Study, StudyResult

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
