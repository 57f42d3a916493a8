"""Evaluation metrics of a test set: AUROC, sensitivity/specificity at a threshold, calibration.

The statistics themselves live in :mod:`xraygate.core.quality.stats` (shared with the reports
from clinicians' labels).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from xraygate.core.quality.stats import auroc, expected_calibration_error
from xraygate.inference.manifest import Metrics


def evaluate(
    labels: ArrayLike,
    scores: ArrayLike,
    high: float,
    evaluated_on: str,
    ood_flagged: float | None = None,
) -> Metrics:
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    flagged = s > high
    return Metrics(
        auroc=round(auroc(y, s), 4),
        sensitivity_at_high=round(float(flagged[y].mean()), 4),
        specificity_at_high=round(float((~flagged[~y]).mean()), 4),
        brier=round(float(np.mean((s - y) ** 2)), 4),
        ece=round(expected_calibration_error(y, s), 4),
        ood_flagged=None if ood_flagged is None else round(ood_flagged, 4),
        evaluated_on=evaluated_on,
    )
