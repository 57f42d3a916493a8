"""Saliency maps: Grad-CAM on the demo model's last convolutional block (found generically),
gradient x input for a model without one, and the map stored by the real worker with the result
(on SQLite and PostgreSQL), or not at all with ``XRAYGATE_SALIENCY=false``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlmodel import select

from tests.inference.conftest import Pipeline
from tests.inference.test_worker import rows, run_all, sample, synthetic, worker_for
from xraygate.core.models import InstanceResult
from xraygate.inference import runtime, saliency
from xraygate.inference.quiet_import import import_keras
from xraygate.inference.training.synthetic import dataset

pytestmark = pytest.mark.integration


def _batch(n: int, seed: int) -> np.ndarray:  # type: ignore[type-arg]
    images, _ = dataset(n, seed)
    batch = np.asarray(images, dtype=np.float32)
    return batch if batch.ndim == 4 else batch[..., np.newaxis]


def test_grad_cam_on_the_demo_models_last_conv_block(demo_model: runtime.LoadedModel) -> None:
    prepared = saliency.prepare(demo_model.model)
    assert prepared.method == saliency.GRAD_CAM
    # the last Conv2D, followed through its batch normalisation and ReLU (same 4-D shape)
    assert prepared.layer == "activation_3"
    batch = _batch(4, seed=5)
    maps = demo_model.saliency(batch)
    assert maps.shape == (4, 128, 128) and maps.dtype == np.float32
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    for one in maps:
        assert float(one.max()) == pytest.approx(1.0) and float(one.std()) > 0.05
    # a map depends on its image: two different images do not get the same map
    assert float(np.abs(maps[0] - maps[1]).mean()) > 0.01
    png = saliency.to_png(maps[0])
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "L" and image.size == (128, 128)
        assert len(np.unique(np.asarray(image))) > 20


def test_a_model_without_convolutions_gets_gradient_x_input() -> None:
    keras = import_keras()
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(8, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    prepared = saliency.prepare(model)
    assert prepared.method == saliency.GRADIENT_X_INPUT and prepared.layer is None
    rng = np.random.default_rng(3)
    maps = saliency.maps(prepared, rng.random((2, 32, 32, 1), dtype=np.float32))
    assert maps.shape == (2, 32, 32)
    assert float(maps.std()) > 0.01 and float(maps.max()) == pytest.approx(1.0)


def test_the_worker_stores_the_map_with_the_result(pipeline: Pipeline, tmp_path: Path) -> None:
    chest = pipeline.ingest(synthetic(tmp_path))
    refused = pipeline.ingest(sample("RG1_UNCR.dcm"))  # out of distribution: no score, no map
    run_all(pipeline, worker_for(pipeline))
    by_study = {r.study_instance_uid: r for r in rows(pipeline, InstanceResult)}
    scored = by_study[chest]
    assert scored.score is not None and scored.saliency_key is not None
    assert scored.saliency_key.startswith("saliency/") and "saliency_ms" in scored.timings
    with Image.open(io.BytesIO(pipeline.store.get_bytes(scored.saliency_key))) as image:
        assert image.mode == "L" and image.size == (128, 128)
        pixels = np.asarray(image)
    assert int(pixels.max()) == 255 and float(pixels.std()) > 5
    assert by_study[refused].score is None and by_study[refused].saliency_key is None


def test_saliency_can_be_switched_off(settings: object, tmp_path: Path) -> None:
    from xraygate.core.config import Settings

    assert isinstance(settings, Settings)
    off = Pipeline(settings.model_copy(update={"saliency": False}), tmp_path)
    try:
        study = off.ingest(synthetic(tmp_path, seed=12))
        run_all(off, worker_for(off))
        from xraygate.core import db

        with db.read_session(off.queue.engine) as session:
            [row] = session.scalars(
                select(InstanceResult).where(InstanceResult.study_instance_uid == study)
            ).all()
        assert row.score is not None and row.saliency_key is None
        assert "saliency_ms" not in row.timings
        assert not list(off.store.list("saliency/"))
    finally:
        off.ingestor.close()
