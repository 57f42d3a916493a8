"""Saliency maps: where the model's score is sensitive, as a small 8-bit grey PNG.

Grad-CAM (Selvaraju et al., 2017): the gradient of the score with respect to the last
convolutional block's feature maps, averaged over space, weighs those maps; their weighted sum,
passed through a ReLU, is the map. The block is found generically: the last ``Conv`` layer of the
model, followed through the element-wise layers after it (batch normalisation, activation) while
they keep the same 4-D shape. A model without a convolutional layer gets a gradient-x-input map
instead. Either way the cost is one forward and one backward pass per batch.

The map covers the model's input (the whole image, resized to the model's size without keeping
the aspect ratio, as :mod:`.preprocess` does), so stretched back over the displayed image it lines
up with it. It shows what the score responds to; it is not a localisation of disease.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from xraygate.core.errors import InferenceError
from xraygate.inference.quiet_import import import_keras

ELEMENTWISE = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU")
GRAD_CAM = "grad-cam"
GRADIENT_X_INPUT = "gradient-x-input"


@dataclass
class SaliencyModel:
    """A model prepared for saliency: ``compute`` maps a batch to raw maps at the input size
    (a compiled TensorFlow function: one forward and one backward pass)."""

    method: str
    layer: str | None
    compute: Any


def target_layer(model: Any) -> Any | None:
    """The last convolutional block's output layer (None when the model has no conv layer)."""
    layers = list(model.layers)
    convs = [i for i, layer in enumerate(layers) if _is_conv(layer)]
    if not convs:
        return None
    index = convs[-1]
    shape = tuple(layers[index].output.shape)
    while index + 1 < len(layers):
        after = layers[index + 1]
        if type(after).__name__ not in ELEMENTWISE or tuple(after.output.shape) != shape:
            break
        index += 1
    return layers[index]


def _is_conv(layer: Any) -> bool:
    try:
        rank = len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer never called (no output) is not in the graph
        return False
    return "Conv" in type(layer).__name__ and rank == 4


def prepare(model: Any) -> SaliencyModel:
    """Grad-CAM on ``model`` (its score is its last output), else gradient x input."""
    import tensorflow as tf  # only inference/ imports tensorflow (loaded with keras already)

    keras = import_keras()
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    layer = target_layer(model)
    if layer is None:
        probe = keras.Model(inputs, [model.inputs[0], model.outputs[-1]])
    else:
        probe = keras.Model(inputs, [layer.output, model.outputs[-1]])
    method = GRADIENT_X_INPUT if layer is None else GRAD_CAM
    shape = tuple(model.inputs[0].shape)

    def compute(images: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(images)
            features, score = probe(images, training=False)
            if layer is None:
                features = images  # the input itself, as the tape saw it
            total = tf.reduce_sum(score)  # images are independent: one backward pass for all
        grads = tape.gradient(total, features)
        if layer is None:
            raw = tf.reduce_sum(tf.abs(grads * images), axis=-1, keepdims=True)
        else:
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            raw = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
        return tf.image.resize(raw, shape[1:3], method="bilinear")[..., 0]

    signature = [tf.TensorSpec((None, *shape[1:]), tf.float32)]
    compiled = tf.function(compute, input_signature=signature)
    return SaliencyModel(method, None if layer is None else layer.name, compiled)


def maps(prepared: SaliencyModel, batch: NDArray[np.float32]) -> NDArray[np.float32]:
    """One map per image of ``batch`` (N, H, W, C): (N, H, W) in [0, 1]."""
    try:
        values = np.asarray(prepared.compute(np.asarray(batch, dtype=np.float32)))
    except Exception as exc:  # TF raises many types; the job records the reason
        raise InferenceError(f"saliency failed: {type(exc).__name__}") from exc
    return _normalise(values.astype(np.float32))


def _normalise(values: NDArray[np.float32]) -> NDArray[np.float32]:
    """Each map scaled to [0, 1] by its own maximum (an all-zero map stays zero)."""
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    values = np.maximum(values, 0.0)
    top = values.reshape(len(values), -1).max(axis=1)
    scale = np.where(top > 0, top, 1.0).astype(np.float32)
    out: NDArray[np.float32] = (values / scale[:, None, None]).astype(np.float32)
    return out


def to_png(saliency: NDArray[np.float32]) -> bytes:
    """An (H, W) map in [0, 1] as an 8-bit grey PNG (255: the most salient)."""
    grey = np.round(np.clip(saliency, 0.0, 1.0) * 255.0).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(grey, mode="L").save(out, format="PNG", optimize=True)
    return out.getvalue()


def object_key(sop_instance_uid: str, input_sha256: str, model_sha256: str) -> str:
    """Where an instance's map by one model version is stored (content-addressed by both)."""
    return f"saliency/{model_sha256[:16]}/{sop_instance_uid}-{input_sha256[:16]}.png"
