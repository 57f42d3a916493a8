"""Build the bundled demonstration model: ``python -m xraygate.inference.training.demo OUT_DIR``.

The whole real pipeline runs: synthetic radiographs are written as PNGs into ``NORMAL/`` and
``PNEUMONIA/`` folders, read back by the directory loader, trained with augmentation and class
weights, and evaluated on a separate held-out synthetic set whose metrics go in the manifest.

``--reference-only`` keeps the existing weights and recomputes the manifest's training reference
(OOD gate, score quantiles) from the same training data and split the weights were trained on.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from xraygate.inference import ood
from xraygate.inference.manifest import DEMO_NOTICE, InputSpec, Manifest, load_manifest
from xraygate.inference.training.data import load_directory, write_png_dataset
from xraygate.inference.training.metrics import evaluate
from xraygate.inference.training.synthetic import dataset
from xraygate.inference.training.train import (
    TrainConfig,
    save,
    split,
    train,
    training_reference,
)

DEMO_NAME = "xraygate-demo-cxr"
DEMO_VERSION = "1.0.0"
HELD_OUT_SEED = 20261123
HELD_OUT_SIZE = 400
N_TRAIN = 3000
CONFIG = TrainConfig(epochs=30, validation_fraction=0.15)


def held_out_set(spec: InputSpec) -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    """The synthetic evaluation set: never seen in training (its own seed)."""
    return dataset(HELD_OUT_SIZE, HELD_OUT_SEED, size=spec.height)


def training_set(spec: InputSpec, n_train: int) -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    """The demo's training images, through PNG files and the directory loader, as a site's."""
    with tempfile.TemporaryDirectory(prefix="xraygate-synthetic-") as tmp:
        images, labels = dataset(n_train, seed=1, size=spec.height)
        write_png_dataset(Path(tmp), images, labels)
        images, labels, _ = load_directory(Path(tmp), spec)
    return images, labels


def _held_out_metrics(model: Any, reference: ood.OodReference, spec: InputSpec) -> Any:
    from xraygate.inference.runtime import with_features

    x_test, y_test = held_out_set(spec)
    features, scores = with_features(model, reference.feature_layer).predict(
        x_test, batch_size=64, verbose=0
    )
    flagged = ood.flagged_share(reference, np.asarray(features, dtype=np.float64), x_test)
    return evaluate(
        y_test,
        np.asarray(scores)[:, 0],
        0.80,
        f"synthetic held-out set, seed {HELD_OUT_SEED}, n={HELD_OUT_SIZE}",
        ood_flagged=flagged,
    )


def _training_data(n_train: int) -> str:
    return (
        f"{n_train} synthetic frontal chest radiographs (xraygate generator, seed 1), 50% with "
        "consolidation-like opacities. No patient data."
    )


def build(out_dir: Path, n_train: int = N_TRAIN, epochs: int = CONFIG.epochs) -> Manifest:
    spec = InputSpec(height=128, width=128)
    images, labels = training_set(spec, n_train)
    config = TrainConfig(epochs=epochs, validation_fraction=CONFIG.validation_fraction)
    trained = train(images, labels, spec, config)
    assert trained.reference.ood is not None
    return save(
        trained.model,
        out_dir,
        name=DEMO_NAME,
        version=DEMO_VERSION,
        spec=spec,
        metrics=_held_out_metrics(trained.model, trained.reference.ood, spec),
        reference=trained.reference,
        training_data=_training_data(n_train),
        intended_use=DEMO_NOTICE + " Shows the triage pipeline end to end.",
        demo=True,
    )


def rebuild_reference(model_dir: Path, n_train: int = N_TRAIN) -> Manifest:
    """Recompute the reference of the weights in ``model_dir`` (the artifact is not touched)."""
    import keras

    manifest = load_manifest(model_dir / "manifest.json")
    model = keras.models.load_model(model_dir / manifest.artifact, compile=False)
    images, labels = training_set(manifest.input, n_train)
    x_train, _, x_val, _ = split(images, labels, CONFIG.validation_fraction, CONFIG.seed)
    reference, _, _ = training_reference(model, x_train, x_val)
    assert reference.ood is not None
    metrics = _held_out_metrics(model, reference.ood, manifest.input)
    updated = manifest.model_copy(update={"reference": reference, "metrics": metrics})
    (model_dir / "manifest.json").write_text(updated.dumps() + "\n")
    return updated


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    target = Path(args[0]) if args else Path(__file__).parents[1] / "demo"
    rebuild = "--reference-only" in sys.argv
    manifest = rebuild_reference(target) if rebuild else build(target)
    print(manifest.model_dump_json(indent=2, exclude={"reference"}))
