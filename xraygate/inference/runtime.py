"""The Keras model at run time: loaded once per worker, verified, warmed up, batched.

When the manifest carries an OOD reference, the loaded model has two outputs: the feature
vector of the reference's layer and the score, so one forward pass gives both; every score then
comes with its OOD distance (:mod:`.ood`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from xraygate.core.errors import InferenceError, ModelRegistryError
from xraygate.inference import ood, saliency
from xraygate.inference.manifest import Manifest
from xraygate.inference.quiet_import import import_keras


@dataclass
class Reading:
    """Scores in [0, 1] and, where the version has a reference, OOD distances (> 1: out)."""

    scores: NDArray[np.float32]
    ood_distances: NDArray[np.float64] | None


@dataclass
class LoadedModel:
    manifest: Manifest
    model: Any
    _saliency: saliency.SaliencyModel | None = None

    def saliency(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Saliency maps (N, H, W) in [0, 1] for a batch (:mod:`.saliency`), built on first use."""
        if self._saliency is None:
            self._saliency = saliency.prepare(self.model)
        return saliency.maps(self._saliency, batch)

    @property
    def label(self) -> str:
        return self.manifest.label

    @property
    def reference(self) -> ood.OodReference | None:
        return self.manifest.reference.ood if self.manifest.reference else None

    def read(self, batch: NDArray[np.float32]) -> Reading:
        """Scores and OOD distances for a batch (N, H, W, 1) in one forward pass."""
        try:
            out = self.model(batch, training=False)
            features = None
            if isinstance(out, list | tuple):
                features = np.asarray(out[0], dtype=np.float64).reshape(len(batch), -1)
                out = out[1]
            scores = np.asarray(out, dtype=np.float32).reshape(-1)
        except Exception as exc:  # TF raises many types; the job records the reason
            raise InferenceError(f"model {self.label} failed: {type(exc).__name__}") from exc
        if scores.shape[0] != batch.shape[0] or not np.all(np.isfinite(scores)):
            raise InferenceError(f"model {self.label} returned invalid scores")
        clipped: NDArray[np.float32] = np.clip(scores, 0.0, 1.0)
        reference = self.reference
        if reference is None or features is None:
            return Reading(clipped, None)
        return Reading(clipped, ood.distances(reference, features, batch))

    def predict(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Pneumonia probabilities in [0, 1] for a batch (N, H, W, 1)."""
        return self.read(batch).scores


def with_features(model: Any, layer: str) -> Any:
    """A two-output model: (features at ``layer``, the model's output)."""
    keras = import_keras()

    try:
        feature = model.get_layer(layer).output
    except ValueError as exc:
        raise ModelRegistryError(f"the OOD reference's layer {layer!r} is missing") from exc
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, [feature, model.outputs[0]])


def load(artifact: Path, manifest: Manifest) -> LoadedModel:
    """Load a verified artifact: its sha256 must match the manifest's; warm it up once."""
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    if digest != manifest.sha256:
        raise ModelRegistryError(
            f"model {manifest.label}: artifact sha256 {digest[:12]} does not match the manifest"
        )
    keras = import_keras()
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
    reference = manifest.reference.ood if manifest.reference else None
    if reference is not None:
        model = with_features(model, reference.feature_layer)
        _check_reference(model, manifest, reference)
    loaded = LoadedModel(manifest, model)
    loaded.read(np.zeros((1, spec.height, spec.width, spec.channels), dtype=np.float32))
    return loaded


def _check_reference(model: Any, manifest: Manifest, reference: ood.OodReference) -> None:
    spec = manifest.input
    features = model(np.zeros((1, spec.height, spec.width, 1), dtype=np.float32))[0]
    width = int(np.prod(np.asarray(features).shape[1:]))
    if width != len(reference.features.mean) or len(reference.image.mean) != ood.N_STATISTICS:
        raise ModelRegistryError(
            f"model {manifest.label}: the OOD reference does not fit the model's features"
        )
