"""Train a pneumonia-risk CNN with tf.data: augmentation, class weights, held-out evaluation,
and the version's training reference (OOD gate, score distribution) for its manifest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from xraygate.inference import ood
from xraygate.inference.manifest import InputSpec, Manifest, Metrics, Reference, Thresholds
from xraygate.inference.training.metrics import evaluate

FEATURE_LAYER = "features"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 1e-3
    validation_fraction: float = 0.2
    seed: int = 7


def build_model(spec: InputSpec) -> Any:
    """A small CNN: four conv blocks, global pooling, one sigmoid output (~60k weights)."""
    import keras
    from keras import layers

    inputs = keras.Input((spec.height, spec.width, spec.channels), name="image")
    x = inputs
    for filters in (16, 32, 48, 64):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D(name=FEATURE_LAYER)(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name="xraygate_cxr_cnn")


def _pipeline(
    images: NDArray[np.float32], labels: NDArray[np.int32], config: TrainConfig, train: bool
) -> Any:
    import tensorflow as tf
    from keras import layers

    data = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.float32)))
    if train:
        augment = tf.keras.Sequential(
            [
                layers.RandomTranslation(0.05, 0.05, fill_mode="nearest", seed=config.seed),
                layers.RandomRotation(0.02, fill_mode="nearest", seed=config.seed),
                layers.RandomContrast(0.2, seed=config.seed),
                layers.RandomBrightness(0.1, value_range=(0.0, 1.0), seed=config.seed),
            ]
        )
        data = data.shuffle(len(images), seed=config.seed).batch(config.batch_size)
        data = data.map(lambda x, y: (augment(x, training=True), y))
    else:
        data = data.batch(config.batch_size)
    return data.prefetch(tf.data.AUTOTUNE)


def class_weights(labels: NDArray[np.int32]) -> dict[int, float]:
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return {c: float(len(labels) / (2 * counts[c])) for c in (0, 1) if counts[c]}


def split(
    images: NDArray[np.float32], labels: NDArray[np.int32], fraction: float, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.int32], NDArray[np.float32], NDArray[np.int32]]:
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(len(images) * (1 - fraction))
    a, b = order[:cut], order[cut:]
    return images[a], labels[a], images[b], labels[b]


@dataclass(frozen=True)
class Trained:
    model: Any
    metrics: Metrics  # on the held-out (validation) split
    reference: Reference


def train(
    images: NDArray[np.float32], labels: NDArray[np.int32], spec: InputSpec, config: TrainConfig
) -> Trained:
    """Fit on a training split; measure it and build its reference on the held-out split."""
    import keras

    keras.utils.set_random_seed(config.seed)
    x_train, y_train, x_val, y_val = split(images, labels, config.validation_fraction, config.seed)
    model = build_model(spec)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    model.fit(
        _pipeline(x_train, y_train, config, train=True),
        validation_data=_pipeline(x_val, y_val, config, train=False),
        epochs=config.epochs,
        class_weight=class_weights(y_train),
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_auc", mode="max", patience=8, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3),
        ],
        verbose=2,
    )
    reference, scores, flagged = training_reference(model, x_train, x_val)
    metrics = evaluate(
        y_val, scores, Thresholds().high, f"held-out split, n={len(y_val)}", ood_flagged=flagged
    )
    return Trained(model, metrics, reference)


def penultimate_layer(model: Any) -> str:
    """The layer feeding the output (past any dropout): the features the OOD gate watches."""
    from keras import layers

    index = len(model.layers) - 2
    while index > 0 and isinstance(model.layers[index], layers.Dropout):
        index -= 1
    return str(model.layers[index].name)


def training_reference(
    model: Any, x_train: NDArray[np.float32], x_val: NDArray[np.float32]
) -> tuple[Reference, NDArray[np.float32], float]:
    """The version's reference: OOD statistics of the training split, thresholds calibrated on
    the validation split, and its validation score quantiles. Also returns the validation
    scores and the share of the validation split the gate flags."""
    from xraygate.inference.runtime import with_features

    layer = penultimate_layer(model)
    two = with_features(model, layer)
    train_features, _ = two.predict(x_train, batch_size=128, verbose=0)
    val_features, val_scores = two.predict(x_val, batch_size=128, verbose=0)
    scores = np.asarray(val_scores, dtype=np.float32).reshape(-1)
    reference, flagged = ood.fit_reference(
        layer,
        (np.asarray(train_features, dtype=np.float64), x_train),
        (np.asarray(val_features, dtype=np.float64), x_val),
    )
    quantiles = np.quantile(scores.astype(np.float64), np.linspace(0, 1, 101))
    return (
        Reference(
            ood=reference,
            score_quantiles=[round(float(q), 6) for q in quantiles],
            validation_n=len(x_val),
        ),
        scores,
        flagged,
    )


def save(
    model: Any,
    out_dir: Path,
    *,
    name: str,
    version: str,
    spec: InputSpec,
    metrics: Metrics,
    reference: Reference | None,
    training_data: str,
    intended_use: str,
    demo: bool,
) -> Manifest:
    """Write ``model.keras`` and ``manifest.json`` (with the artifact's sha256) to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / "model.keras"
    model.save(artifact)
    manifest = Manifest(
        reference=reference,
        name=name,
        version=version,
        sha256=hashlib.sha256(artifact.read_bytes()).hexdigest(),
        input=spec,
        training_data=training_data,
        metrics=metrics,
        intended_use=intended_use,
        demo=demo,
    )
    (out_dir / "manifest.json").write_text(manifest.dumps() + "\n")
    return manifest
