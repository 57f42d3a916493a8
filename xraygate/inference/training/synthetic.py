"""Synthetic frontal chest radiographs, for the bundled demonstration model and for tests.

No labelled chest X-ray data can be downloaded here, so the demo model learns from drawings:
a soft-tissue body outline, two lung fields (dark), a heart shadow, a spine, ribs and
diaphragm domes (bright), scanner noise and random exposure. Positive images add one to three
consolidation-like opacities (soft, blotchy brightening inside a lung field). The images are in
the model's input space: display orientation (air dark), values in [0, 1].

This is a demonstration of the pipeline, not a clinical model.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float32]


def _grid(size: int) -> tuple[Array, Array]:
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    return yy, xx


def _ellipse(yy: Array, xx: Array, cy: float, cx: float, ry: float, rx: float) -> Array:
    d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    out: Array = np.clip(1.5 - d, 0.0, 1.0).astype(np.float32) ** 0.7
    return out


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> Array:
    coarse = rng.standard_normal((scale, scale)).astype(np.float32)
    reps = -(-size // scale)
    big = np.kron(coarse, np.ones((reps, reps), dtype=np.float32))[:size, :size]
    kernel = np.ones(reps, dtype=np.float32) / reps
    big = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 0, big)
    big = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, big)
    return big.astype(np.float32)


def chest(rng: np.random.Generator, size: int = 128, pneumonia: bool = False) -> Array:
    """One synthetic frontal chest radiograph (size x size) in [0, 1]."""
    yy, xx = _grid(size)
    cx = rng.normal(0, 0.04)
    image = 0.08 + 0.45 * _ellipse(yy, xx, 0.1, cx, 1.05, rng.uniform(0.8, 0.95))
    lungs = np.zeros_like(image)
    for side in (-1, 1):
        ly, lx = rng.normal(-0.05, 0.04), cx + side * rng.uniform(0.36, 0.44)
        lungs = np.maximum(
            lungs, _ellipse(yy, xx, ly, lx, rng.uniform(0.55, 0.7), rng.uniform(0.22, 0.3))
        )
    image -= 0.32 * lungs
    heart = _ellipse(yy, xx, rng.uniform(0.2, 0.3), cx + rng.uniform(0.05, 0.15), 0.28, 0.24)
    image += 0.22 * heart
    image += 0.3 * np.exp(-(((xx - cx) / 0.06) ** 2))  # spine
    for k in range(rng.integers(7, 10)):
        y0 = -0.65 + k * 0.16 + rng.normal(0, 0.02)
        arc = y0 + 0.25 * (xx - cx) ** 2
        image += 0.08 * np.exp(-(((yy - arc) / 0.025) ** 2)) * (lungs > 0.05)
    diaphragm = yy > (0.55 + 0.15 * np.abs(xx - cx) + rng.normal(0, 0.03))
    image += 0.25 * diaphragm
    if pneumonia:
        image += _opacities(rng, yy, xx, lungs, size)
    image *= rng.uniform(0.8, 1.2)
    image += rng.uniform(-0.08, 0.08)
    image += 0.015 * rng.standard_normal(image.shape).astype(np.float32)
    gamma = rng.uniform(0.8, 1.25)
    out: Array = np.clip(image, 0.0, 1.0).astype(np.float32) ** np.float32(gamma)
    return out


def _opacities(rng: np.random.Generator, yy: Array, xx: Array, lungs: Array, size: int) -> Array:
    inside = np.argwhere(lungs > 0.6)
    total = np.zeros_like(lungs)
    for _ in range(rng.integers(1, 4)):
        py, px = inside[rng.integers(len(inside))]
        cy, cx = py / size * 2 - 1, px / size * 2 - 1
        r = rng.uniform(0.1, 0.22)
        blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
        texture = 0.6 + 0.4 * np.clip(_smooth_noise(rng, size, 12), -1, 1)
        total += rng.uniform(0.18, 0.35) * blob * texture
    out: Array = (total * np.clip(lungs * 1.5, 0, 1)).astype(np.float32)
    return out


def dataset(
    n: int, seed: int, size: int = 128, positive_fraction: float = 0.5
) -> tuple[Array, NDArray[np.int32]]:
    """``n`` images (n, size, size, 1) and labels (1 = pneumonia), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < positive_fraction).astype(np.int32)
    images = np.stack([chest(rng, size, bool(label)) for label in labels])[..., np.newaxis]
    return images.astype(np.float32), labels
