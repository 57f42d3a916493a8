"""Build the bundled demonstration model: ``python -m xraygate.inference.training.demo OUT_DIR``.

The whole real pipeline runs: synthetic radiographs are written as PNGs into ``NORMAL/`` and
``PNEUMONIA/`` folders, read back by the directory loader, trained with augmentation and class
weights, and evaluated on a separate held-out synthetic set whose metrics go in the manifest.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from xraygate.inference.manifest import DEMO_NOTICE, InputSpec, Manifest
from xraygate.inference.training.data import load_directory, write_png_dataset
from xraygate.inference.training.metrics import evaluate
from xraygate.inference.training.synthetic import dataset
from xraygate.inference.training.train import TrainConfig, save, train

DEMO_NAME = "xraygate-demo-cxr"
DEMO_VERSION = "1.0.0"
HELD_OUT_SEED = 20261123
HELD_OUT_SIZE = 400


def held_out_set(spec: InputSpec) -> tuple[object, object]:
    """The synthetic evaluation set: never seen in training (its own seed)."""
    return dataset(HELD_OUT_SIZE, HELD_OUT_SEED, size=spec.height)


def build(out_dir: Path, n_train: int = 3000, epochs: int = 30) -> Manifest:
    spec = InputSpec(height=128, width=128)
    with tempfile.TemporaryDirectory(prefix="xraygate-synthetic-") as tmp:
        images, labels = dataset(n_train, seed=1, size=spec.height)
        write_png_dataset(Path(tmp), images, labels)
        images, labels, _ = load_directory(Path(tmp), spec)
    model, _ = train(images, labels, spec, TrainConfig(epochs=epochs, validation_fraction=0.15))
    x_test, y_test = dataset(HELD_OUT_SIZE, HELD_OUT_SEED, size=spec.height)
    scores = model.predict(x_test, batch_size=64, verbose=0)[:, 0]
    metrics = evaluate(
        y_test, scores, 0.80, f"synthetic held-out set, seed {HELD_OUT_SEED}, n={HELD_OUT_SIZE}"
    )
    return save(
        model,
        out_dir,
        name=DEMO_NAME,
        version=DEMO_VERSION,
        spec=spec,
        metrics=metrics,
        training_data=f"{n_train} synthetic frontal chest radiographs (xraygate generator, "
        "seed 1), 50% with consolidation-like opacities. No patient data.",
        intended_use=DEMO_NOTICE + " Shows the triage pipeline end to end.",
        demo=True,
    )


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "demo"
    manifest = build(target)
    print(manifest.dumps())
