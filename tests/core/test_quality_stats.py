"""The quality statistics against independent implementations (scikit-learn, SciPy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from xraygate.core.quality import stats


@pytest.fixture
def sample() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.clip(0.35 * y + rng.normal(0.35, 0.2, 300), 0, 1)
    s[:40] = np.round(s[:40], 1)  # ties, and scores on bin edges
    return y, s


def test_auroc_equals_sklearn_with_ties(sample: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = sample
    assert stats.auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert stats.auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        stats.auroc([1, 1], [0.2, 0.3])


def test_reliability_bins_equal_sklearn_calibration_curve() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    s = rng.random(500)  # no score exactly on an edge
    bins = [b for b in stats.reliability(y, s, 10) if b.n]
    observed, predicted = calibration_curve(y, s, n_bins=10, strategy="uniform")
    assert np.allclose([b.observed for b in bins], observed)
    assert np.allclose([b.mean_score for b in bins], predicted)
    counts = np.histogram(s, bins=np.linspace(0, 1, 11))[0]
    nonempty = counts[counts > 0]
    ece = sum(n / 500 * abs(p - o) for n, p, o in zip(nonempty, predicted, observed, strict=True))
    assert stats.expected_calibration_error(y, s) == pytest.approx(ece)


def test_wilson_interval_matches_the_closed_form() -> None:
    # Newcombe (1998) example: 81 of 263 -> 0.2553 to 0.3662 (Wilson, no continuity correction)
    low, high = stats.wilson(81, 263)  # type: ignore[misc]
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    result = scipy_stats.binomtest(15, 20).proportion_ci(method="wilson")
    assert stats.wilson(15, 20) == pytest.approx((result.low, result.high))
    assert stats.wilson(0, 0) is None
    assert stats.wilson(0, 10)[0] == 0.0  # type: ignore[index]


def test_bootstrap_interval_covers_the_estimate(sample: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = sample
    low, high = stats.bootstrap(lambda i: stats.auroc(y[i], s[i]), len(y), resamples=300)  # type: ignore[misc]
    assert low < roc_auc_score(y, s) < high and high - low < 0.15
    assert stats.bootstrap(lambda i: None, 10) is None


def test_ks_against_reference_quantiles_equals_scipy() -> None:
    rng = np.random.default_rng(9)
    reference = rng.beta(2, 5, 5000)
    quantiles = np.quantile(reference, np.linspace(0, 1, 101))
    cdf = stats.reference_cdf(quantiles)
    shifted = rng.beta(3, 4, 400)
    statistic, p = stats.ks(quantiles, shifted)
    expected = scipy_stats.kstest(shifted, lambda x: cdf(np.asarray(x)), method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=0.05, abs=1e-6)
    assert p < 1e-6
    # 101 quantiles approximate the true CDF closely: same statistic as against the true one
    same = rng.beta(2, 5, 400)
    truth = scipy_stats.kstest(same, scipy_stats.beta(2, 5).cdf)
    assert stats.ks(quantiles, same)[0] == pytest.approx(truth.statistic, abs=0.01)


def test_psi_is_zero_on_the_reference_and_large_when_shifted() -> None:
    rng = np.random.default_rng(1)
    reference = rng.random(10_000)
    quantiles = np.quantile(reference, np.linspace(0, 1, 101))
    assert stats.psi(quantiles, rng.random(10_000)) < 0.01
    shifted = np.clip(rng.random(2000) * 0.5 + 0.5, 0, 1)  # only the upper half
    expected_share = 0.1
    edges = np.quantile(reference, np.linspace(0, 1, 11))  # the reference's deciles
    edges[0], edges[-1] = -np.inf, np.inf
    actual = np.histogram(shifted, bins=edges)[0] / 2000
    actual = np.maximum(actual, 1e-4)
    by_hand = float(np.sum((actual - expected_share) * np.log(actual / expected_share)))
    assert stats.psi(quantiles, shifted) == pytest.approx(by_hand, rel=1e-6)
    assert stats.psi(quantiles, shifted) > 0.25
