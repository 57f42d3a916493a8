"""The figures of one model version over one set of studies: from (label, category, score) rows
to sensitivity, specificity, PPV, NPV, agreement, AUROC, calibration and drift, with intervals.

Definitions (a study's **label** is the clinician's latest finding: pneumonia or not):

- *sensitivity at the high threshold*: share of pneumonia studies triaged ``high`` (a study
  without a score, e.g. out of distribution, was not escalated: it counts as missed);
- *specificity*: share of no-pneumonia studies not triaged ``high``;
- *PPV of high*: share of ``high`` studies with pneumonia; *NPV of low*: share of ``low`` studies
  without;
- *agreement*: share of labelled studies where the category states the label (``high`` with
  pneumonia, ``low`` without); ``indeterminate`` does not agree (the model did not commit);
- *indeterminate* and *out-of-distribution* shares are over **all** the version's results;
- *AUROC* and *calibration* (10 equal-width reliability bins, ECE) over labelled studies with a
  score, AUROC only with at least :data:`MIN_PER_CLASS` studies of each label;
- *drift*: PSI and KS of all the version's scores against its validation score quantiles.

Proportions carry Wilson 95 % intervals; AUROC and ECE percentile-bootstrap 95 % intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from xraygate.core.quality import stats

MIN_PER_CLASS = 5  # labelled studies of each class before an AUROC is given
MIN_DRIFT = 10  # scores before PSI / KS are given
BOOTSTRAP_RESAMPLES = 500

Json = dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One study's result by one version, and the study's label (None: no finding yet)."""

    study_uid: str
    category: str
    score: float | None
    label: int | None
    ood: bool = False


def proportion(k: int, n: int, intervals: bool = True) -> Json:
    return {
        "value": round(k / n, 6) if n else None,
        "k": k,
        "n": n,
        "ci95": _rounded(stats.wilson(k, n)) if intervals else None,
    }


def _rounded(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [round(interval[0], 6), round(interval[1], 6)]


def confusion(rows: Sequence[Row]) -> dict[str, int]:
    """Counts at the high threshold over labelled rows: tp, fn, tn, fp (+ low/high splits)."""
    out = {"tp": 0, "fn": 0, "tn": 0, "fp": 0, "low_pos": 0, "low_neg": 0}
    for r in rows:
        if r.label is None:
            continue
        high = r.category == "high"
        if r.label:
            out["tp" if high else "fn"] += 1
            out["low_pos"] += r.category == "low"
        else:
            out["fp" if high else "tn"] += 1
            out["low_neg"] += r.category == "low"
    return out


def agreement_count(rows: Sequence[Row]) -> int:
    return sum(
        (r.category == "high" and r.label == 1) or (r.category == "low" and r.label == 0)
        for r in rows
    )


def measure(
    rows: Sequence[Row], score_quantiles: Sequence[float] = (), *, intervals: bool = True
) -> Json:
    """Every figure of one version over ``rows`` (all its results, labelled or not)."""
    labelled = [r for r in rows if r.label is not None]
    c = confusion(labelled)
    n_pos, n_neg = c["tp"] + c["fn"], c["tn"] + c["fp"]
    out: Json = {
        "n_results": len(rows),
        "n_labelled": len(labelled),
        "n_pneumonia": n_pos,
        "n_no_pneumonia": n_neg,
        "confusion_at_high": {k: c[k] for k in ("tp", "fn", "tn", "fp")},
        "sensitivity": proportion(c["tp"], n_pos, intervals),
        "specificity": proportion(c["tn"], n_neg, intervals),
        "ppv_high": proportion(c["tp"], c["tp"] + c["fp"], intervals),
        "npv_low": proportion(c["low_neg"], c["low_neg"] + c["low_pos"], intervals),
        "agreement": proportion(agreement_count(labelled), len(labelled), intervals),
        "indeterminate_share": proportion(
            sum(r.category == "indeterminate" for r in rows), len(rows), intervals
        ),
        "ood_share": proportion(sum(r.ood for r in rows), len(rows), intervals),
    }
    scored = [r for r in labelled if r.score is not None]
    y = np.array([r.label for r in scored], dtype=np.int64)
    s = np.array([r.score for r in scored], dtype=np.float64)
    out["auroc"] = _auroc(y, s, intervals)
    out["calibration"] = _calibration(y, s, intervals)
    out["drift"] = drift([r.score for r in rows if r.score is not None], score_quantiles)
    return out


def _auroc(y: np.ndarray[Any, Any], s: np.ndarray[Any, Any], intervals: bool) -> Json | None:
    if int(y.sum()) < MIN_PER_CLASS or int((1 - y).sum()) < MIN_PER_CLASS:
        return None

    def statistic(index: np.ndarray[Any, Any]) -> float | None:
        sample = y[index]
        if sample.min() == sample.max():
            return None
        return stats.auroc(sample, s[index])

    ci = stats.bootstrap(statistic, len(y), resamples=BOOTSTRAP_RESAMPLES) if intervals else None
    return {"value": round(stats.auroc(y, s), 6), "n": len(y), "ci95": _rounded(ci)}


def _calibration(y: np.ndarray[Any, Any], s: np.ndarray[Any, Any], intervals: bool) -> Json | None:
    if len(y) == 0:
        return None

    def statistic(index: np.ndarray[Any, Any]) -> float:
        return stats.expected_calibration_error(y[index], s[index])

    ci = stats.bootstrap(statistic, len(y), resamples=BOOTSTRAP_RESAMPLES) if intervals else None
    return {
        "n": len(y),
        "ece": round(stats.expected_calibration_error(y, s), 6),
        "ece_ci95": _rounded(ci),
        "brier": round(float(np.mean((s - y) ** 2)), 6),
        "bins": [asdict(b) for b in stats.reliability(y, s)],
    }


def drift(scores: Sequence[float], score_quantiles: Sequence[float]) -> Json | None:
    """PSI and KS of ``scores`` against the version's validation scores (None: too few, or no
    reference in the manifest)."""
    if len(score_quantiles) < 2 or len(scores) < MIN_DRIFT:
        return None
    statistic, p_value = stats.ks(score_quantiles, scores)
    return {
        "n": len(scores),
        "psi": round(stats.psi(score_quantiles, scores), 6),
        "ks": round(statistic, 6),
        "ks_p": round(p_value, 6),
    }


def paired(baseline: Sequence[Row], candidate: Sequence[Row], *, intervals: bool = True) -> Json:
    """Two versions on the same labelled studies: each one's figures and the differences
    (candidate - baseline) with paired bootstrap intervals (studies resampled together)."""
    by_uid = {r.study_uid: r for r in baseline if r.label is not None}
    pairs = [(by_uid[r.study_uid], r) for r in candidate if r.study_uid in by_uid]
    a = [p[0] for p in pairs]
    b = [p[1] for p in pairs]
    out: Json = {
        "n_paired": len(pairs),
        "baseline_figures": measure(a, intervals=intervals),
        "candidate_figures": measure(b, intervals=intervals),
    }
    correct_a = np.array([_agrees(r) for r in a], dtype=bool)
    correct_b = np.array([_agrees(r) for r in b], dtype=bool)
    out["discordant"] = {
        "only_baseline_agrees": int((correct_a & ~correct_b).sum()),
        "only_candidate_agrees": int((~correct_a & correct_b).sum()),
    }
    out["difference"] = {
        "agreement": _difference(a, b, _agreement, intervals),
        "sensitivity": _difference(a, b, _sensitivity, intervals),
        "specificity": _difference(a, b, _specificity, intervals),
    }
    return out


def _agrees(r: Row) -> bool:
    return (r.category == "high" and r.label == 1) or (r.category == "low" and r.label == 0)


def _agreement(rows: Sequence[Row]) -> float | None:
    return agreement_count(rows) / len(rows) if rows else None


def _sensitivity(rows: Sequence[Row]) -> float | None:
    pos = [r for r in rows if r.label == 1]
    return sum(r.category == "high" for r in pos) / len(pos) if pos else None


def _specificity(rows: Sequence[Row]) -> float | None:
    neg = [r for r in rows if r.label == 0]
    return sum(r.category != "high" for r in neg) / len(neg) if neg else None


def _difference(a: Sequence[Row], b: Sequence[Row], fn: Any, intervals: bool) -> Json:
    va, vb = fn(a), fn(b)
    value = None if va is None or vb is None else round(vb - va, 6)

    def statistic(index: np.ndarray[Any, Any]) -> float | None:
        sa, sb = fn([a[i] for i in index]), fn([b[i] for i in index])
        return None if sa is None or sb is None else float(sb - sa)

    ci = None
    if intervals and value is not None:
        ci = stats.bootstrap(statistic, len(a), resamples=BOOTSTRAP_RESAMPLES)
    return {"value": value, "ci95": _rounded(ci)}
