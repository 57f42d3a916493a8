"""The Keras model at run time: loaded once per worker, verified, warmed up, batched."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from xraygate.core.errors import InferenceError, ModelRegistryError
from xraygate.inference.manifest import Manifest


@dataclass
class LoadedModel:
    manifest: Manifest
    model: Any

    @property
    def label(self) -> str:
        return self.manifest.label

    def predict(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Pneumonia probabilities in [0, 1] for a batch (N, H, W, 1)."""
        try:
            out = self.model(batch, training=False)
            scores = np.asarray(out, dtype=np.float32).reshape(-1)
        except Exception as exc:  # TF raises many types; the job records the reason
            raise InferenceError(f"model {self.label} failed: {type(exc).__name__}") from exc
        if scores.shape[0] != batch.shape[0] or not np.all(np.isfinite(scores)):
            raise InferenceError(f"model {self.label} returned invalid scores")
        clipped: NDArray[np.float32] = np.clip(scores, 0.0, 1.0)
        return clipped


def load(artifact: Path, manifest: Manifest) -> LoadedModel:
    """Load a verified artifact: its sha256 must match the manifest's; warm it up once."""
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    if digest != manifest.sha256:
        raise ModelRegistryError(
            f"model {manifest.label}: artifact sha256 {digest[:12]} does not match the manifest"
        )
    import keras

    try:
        model = keras.models.load_model(artifact, compile=False)
    except Exception as exc:
        raise ModelRegistryError(f"model {manifest.label} cannot be loaded: {exc}") from exc
    spec = manifest.input
    expected = (None, spec.height, spec.width, spec.channels)
    if tuple(model.input_shape) != expected:
        raise ModelRegistryError(
            f"model {manifest.label}: input {model.input_shape} differs from manifest {expected}"
        )
    loaded = LoadedModel(manifest, model)
    loaded.predict(np.zeros((1, spec.height, spec.width, spec.channels), dtype=np.float32))
    return loaded
