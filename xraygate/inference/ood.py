"""The out-of-distribution gate: is this image like the ones the model was trained on?

A model version's manifest carries a reference of its training inputs (:class:`OodReference`):

- the **features** the network computes at its penultimate layer (global average pooling of the
  last convolution block): mean and precision of a Ledoit-Wolf shrunk covariance;
- simple **image statistics** of the preprocessed input (:func:`image_statistics`: brightness,
  contrast, clipped fractions, edge energy, left-right symmetry, a 4x4 brightness layout), the
  same Gaussian summary.

An image's Mahalanobis distance to each is divided by that part's threshold, and the larger of
the two is the image's **OOD distance**: 1.0 is the version's threshold, above it the image is
out of distribution and the model's score is not used (the result is ``indeterminate``, never
``low``: the model cannot rule anything out on an image it does not know). The thresholds are
quantiles of the distances of held-out in-distribution images (the training run's validation
split), chosen so that at most ``target`` of them (default 3 %) are flagged.

Numpy only: the features come from :mod:`.runtime`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field, model_validator

Matrix = NDArray[np.float64]

OOD_THRESHOLD = 1.0  # distances are in units of the version's threshold
IMAGE_STATISTICS = "v1"
N_STATISTICS = 22
DEFAULT_TARGET = 0.03  # share of held-out in-distribution images flagged at calibration
MIN_CALIBRATION = 20  # fewer validation images: calibrate on training + validation distances


class Gaussian(BaseModel):
    """Mean and precision (inverse shrunk covariance) of reference vectors, and the distance
    above which a vector counts as out of distribution."""

    mean: list[float]
    precision: list[list[float]]
    shrinkage: float = Field(ge=0, le=1, description="Ledoit-Wolf shrinkage applied")
    threshold: float = Field(gt=0, description="Mahalanobis distance at OOD distance 1.0")

    @model_validator(mode="after")
    def _square(self) -> Gaussian:
        size = len(self.mean)
        if size == 0 or len(self.precision) != size or any(len(r) != size for r in self.precision):
            raise ValueError("precision must be a square matrix the size of mean")
        return self

    def distance(self, vectors: Matrix) -> Matrix:
        """Mahalanobis distance of each row of ``vectors``."""
        centred = np.asarray(vectors, dtype=np.float64) - np.asarray(self.mean)
        precision = np.asarray(self.precision, dtype=np.float64)
        squared = np.einsum("ij,jk,ik->i", centred, precision, centred)
        out: Matrix = np.sqrt(np.maximum(squared, 0.0))
        return out


class OodReference(BaseModel):
    feature_layer: str = Field(description="Keras layer whose output is the feature vector")
    features: Gaussian
    image: Gaussian
    image_statistics: str = IMAGE_STATISTICS
    calibration: str = Field("", description="where the thresholds come from, flagged share")


def image_statistics(images: NDArray[np.float32]) -> Matrix:
    """Per image (N, H, W, 1) in [0, 1]: 22 numbers describing brightness and layout."""
    x = np.asarray(images, dtype=np.float64)[..., 0]
    n, height, width = x.shape
    mean = x.mean(axis=(1, 2))
    centred = x - mean[:, None, None]
    energy = (centred**2).sum(axis=(1, 2))
    symmetry = (centred * centred[:, :, ::-1]).sum(axis=(1, 2)) / np.maximum(energy, 1e-12)
    edges = np.abs(np.diff(x, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(x, axis=2)).mean(
        axis=(1, 2)
    )
    rows = np.linspace(0, height, 5).astype(int)
    cols = np.linspace(0, width, 5).astype(int)
    layout = [
        x[:, rows[i] : rows[i + 1], cols[j] : cols[j + 1]].mean(axis=(1, 2))
        for i in range(4)
        for j in range(4)
    ]
    columns = [
        mean,
        x.std(axis=(1, 2)),
        (x < 0.05).mean(axis=(1, 2)),
        (x > 0.95).mean(axis=(1, 2)),
        edges,
        symmetry,
        *layout,
    ]
    return np.column_stack(columns).reshape(n, len(columns))


def ledoit_wolf(vectors: Matrix) -> tuple[Matrix, Matrix, float]:
    """Mean, Ledoit-Wolf shrunk covariance and the shrinkage (Ledoit & Wolf 2004)."""
    x = np.asarray(vectors, dtype=np.float64)
    n, d = x.shape
    mean = x.mean(axis=0)
    centred = x - mean
    empirical = centred.T @ centred / n
    mu = float(np.trace(empirical)) / d
    squares = centred**2
    beta_sum = float(np.sum(squares.T @ squares))
    delta_sum = float(np.sum((centred.T @ centred) ** 2)) / n**2
    beta = (beta_sum / n - delta_sum) / (d * n)
    delta = (delta_sum - 2.0 * mu * float(squares.sum(axis=0).sum()) / n + d * mu**2) / d
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    shrunk = (1.0 - shrinkage) * empirical + shrinkage * mu * np.eye(d)
    return mean, shrunk, float(shrinkage)


def fit_gaussian(reference: Matrix, calibration: Matrix, quantile: float) -> Gaussian:
    """Summarise ``reference`` rows; the threshold is ``quantile`` of ``calibration`` distances.

    Numbers are rounded to 7 significant digits (the manifest is JSON) before the threshold is
    measured, so the stored reference flags exactly what was calibrated.
    """
    mean, covariance, shrinkage = ledoit_wolf(reference)
    scale = float(np.trace(covariance)) / len(mean) or 1.0
    precision = np.linalg.pinv(covariance / scale) / scale
    gaussian = Gaussian(
        mean=[_round(v) for v in mean],
        precision=[[_round(v) for v in row] for row in precision],
        shrinkage=round(shrinkage, 6),
        threshold=1.0,
    )
    distances = gaussian.distance(calibration)
    gaussian.threshold = float(np.quantile(distances, quantile)) or 1e-6
    return gaussian


def _round(value: float) -> float:
    return float(f"{value:.7g}")


def fit_reference(
    feature_layer: str,
    train: tuple[Matrix, NDArray[np.float32]],
    validation: tuple[Matrix, NDArray[np.float32]],
    target: float = DEFAULT_TARGET,
) -> tuple[OodReference, float]:
    """The reference of a training run: ``train`` and ``validation`` are (features, images).

    Each part's threshold is its ``1 - target / 2`` quantile on the validation split, so the
    union flags about ``target`` of it. Returns the reference and the share of the calibration
    images it flags.
    """
    train_features, train_images = train
    val_features, val_images = validation
    train_stats, val_stats = image_statistics(train_images), image_statistics(val_images)
    if len(val_features) < MIN_CALIBRATION:
        val_features = np.concatenate([train_features, val_features])
        val_stats = np.concatenate([train_stats, val_stats])
        source = f"training + validation images (n={len(val_features)})"
    else:
        source = f"validation split (n={len(val_features)})"
    quantile = 1.0 - target / 2
    reference = OodReference(
        feature_layer=feature_layer,
        features=fit_gaussian(train_features, val_features, quantile),
        image=fit_gaussian(train_stats, val_stats, quantile),
    )
    flagged = float((combined(reference, val_features, val_stats) > OOD_THRESHOLD).mean())
    reference.calibration = (
        f"{source}: {flagged:.1%} flagged at distance > {OOD_THRESHOLD} (target {target:.0%})"
    )
    return reference, flagged


def combined(reference: OodReference, features: Matrix, statistics: Matrix) -> Matrix:
    by_features = reference.features.distance(features) / reference.features.threshold
    by_image = reference.image.distance(statistics) / reference.image.threshold
    out: Matrix = np.maximum(by_features, by_image)
    return out


def distances(
    reference: OodReference, features: Matrix, images: NDArray[np.float32]
) -> NDArray[np.float64]:
    """Each image's OOD distance (> 1.0: out of distribution)."""
    return combined(reference, features, image_statistics(images))


def flagged_share(reference: OodReference, features: Matrix, images: NDArray[np.float32]) -> float:
    return float((distances(reference, features, images) > OOD_THRESHOLD).mean())
