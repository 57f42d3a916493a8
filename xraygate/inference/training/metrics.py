"""Evaluation metrics, in numpy: AUROC, sensitivity/specificity at a threshold, calibration."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from xraygate.inference.manifest import Metrics


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUROC needs both classes")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order), dtype=np.float64)
    combined = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(combined):  # average ranks of ties
        j = i
        while j + 1 < len(combined) and combined[j + 1] == combined[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def expected_calibration_error(labels: ArrayLike, scores: ArrayLike, bins: int = 10) -> float:
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            error += mask.mean() * abs(s[mask].mean() - y[mask].mean())
    return float(error)


def evaluate(labels: ArrayLike, scores: ArrayLike, high: float, evaluated_on: str) -> Metrics:
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    flagged = s > high
    return Metrics(
        auroc=round(auroc(y, s), 4),
        sensitivity_at_high=round(float(flagged[y].mean()), 4),
        specificity_at_high=round(float((~flagged[~y]).mean()), 4),
        brier=round(float(np.mean((s - y) ** 2)), 4),
        ece=round(expected_calibration_error(y, s), 4),
        evaluated_on=evaluated_on,
    )
