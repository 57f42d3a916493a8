"""Statistics of a model's readings against labels, in numpy (no TensorFlow, no scikit-learn):
AUROC, reliability bins and expected calibration error, Wilson and bootstrap confidence
intervals, and the drift of a score distribution against a reference (PSI, two-sample KS).

Each function is checked against scikit-learn / SciPy in ``tests/core/quality``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: the Mann-Whitney U statistic, ties counted half."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both classes")
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _average_ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    mean_rank = (first + last) / 2 + 1
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


@dataclass(frozen=True)
class Bin:
    """One reliability bin: scores in [low, high) (the last bin includes 1.0)."""

    low: float
    high: float
    n: int
    mean_score: float | None
    observed: float | None  # share of positive labels


def reliability(labels: ArrayLike, scores: ArrayLike, bins: int = 10) -> list[Bin]:
    """Equal-width reliability bins over [0, 1]."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        out.append(
            Bin(
                low=float(edges[b]),
                high=float(edges[b + 1]),
                n=n,
                mean_score=float(s[mask].mean()) if n else None,
                observed=float(y[mask].mean()) if n else None,
            )
        )
    return out


def expected_calibration_error(labels: ArrayLike, scores: ArrayLike, bins: int = 10) -> float:
    """ECE: the count-weighted mean |mean score - observed rate| over the reliability bins."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        raise ValueError("ECE needs at least one score")
    index = np.clip(np.digitize(s, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, s, bins) - np.bincount(index, y, bins))  # n * |mean - rate|
    return float(gap[counts > 0].sum() / len(s))


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (None when n is 0)."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


Statistic = Callable[[NDArray[np.int64]], float | None]


def bootstrap(
    statistic: Statistic,
    n: int,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic(indices)`` over ``n`` paired items.

    ``statistic`` gets an index array (a resample with replacement) and returns a value, or None
    when the resample cannot give one (e.g. AUROC of a single class): those are skipped. None
    when fewer than half the resamples give a value.
    """
    if n <= 1:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        value = statistic(rng.integers(0, n, n))
        if value is not None and math.isfinite(value):
            values.append(value)
    if len(values) < resamples / 2:
        return None
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


# --- drift ---------------------------------------------------------------------------------


def reference_cdf(quantiles: Sequence[float]) -> Callable[[NDArray[np.float64]], NDArray[Any]]:
    """The CDF of a distribution given by its quantiles at 0, 1/(k-1), ..., 1."""
    q = np.asarray(quantiles, dtype=np.float64)
    if len(q) < 2 or np.any(np.diff(q) < 0):
        raise ValueError("need at least two non-decreasing quantiles")
    probabilities = np.linspace(0.0, 1.0, len(q))

    def cdf(x: NDArray[np.float64]) -> NDArray[Any]:
        # for tied quantiles take the highest probability reached at that value
        return np.interp(x, q, probabilities, left=0.0, right=1.0)

    return cdf


def psi(
    quantiles: Sequence[float], scores: ArrayLike, bins: int = 10, floor: float = 1e-4
) -> float:
    """Population stability index of ``scores`` against a reference given by its quantiles.

    Bins are the reference's ``bins``-iles (each holds 1/bins of the reference); empty shares
    are floored at ``floor``. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 shifted.
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        raise ValueError("PSI needs at least one score")
    q = np.asarray(quantiles, dtype=np.float64)
    cut = np.interp(np.linspace(0, 1, bins + 1)[1:-1], np.linspace(0, 1, len(q)), q)
    counts = np.bincount(np.searchsorted(cut, s, side="right"), minlength=bins)
    actual = np.maximum(counts / len(s), floor)
    expected = np.full(bins, 1.0 / bins)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks(quantiles: Sequence[float], scores: ArrayLike) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic of ``scores`` against the reference CDF, and its
    asymptotic p-value (one-sample: the reference is taken as known)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    if n == 0:
        raise ValueError("KS needs at least one score")
    cdf = reference_cdf(quantiles)(s)
    above = np.arange(1, n + 1) / n - cdf
    below = cdf - np.arange(0, n) / n
    statistic = float(max(above.max(), below.max()))
    return statistic, kolmogorov_p(statistic, n)


def kolmogorov_p(statistic: float, n: int) -> float:
    """P(D_n >= statistic) from the Kolmogorov distribution (Stephens' small-n correction)."""
    if statistic <= 0:
        return 1.0
    sqrt_n = math.sqrt(n)
    lam = (sqrt_n + 0.12 + 0.11 / sqrt_n) * statistic
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return float(min(1.0, max(0.0, 2 * total)))
