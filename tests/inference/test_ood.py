"""The out-of-distribution gate of the bundled demo model: calibrated on held-out synthetic
radiographs, it flags noise, inverted, cropped and non-chest images; and the verdict on the real
chest CR of pydicom-data (RG1), whatever it is, is printed and pinned."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from sklearn.covariance import ledoit_wolf as sklearn_ledoit_wolf
from sqlmodel import select

from tests.inference.conftest import Pipeline
from tests.synthetic_cr import synthetic_cr
from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.errors import ModelRegistryError
from xraygate.core.models import InstanceResult, StudyResult
from xraygate.core.storage import store_from_settings
from xraygate.core.worker import Worker
from xraygate.inference import ood, runtime
from xraygate.inference.preprocess import preprocess
from xraygate.inference.registry import DEMO_DIR, import_model
from xraygate.inference.training.demo import held_out_set
from xraygate.inference.worker import make_handlers

NON_CHEST = [
    "RG3_UNCR.dcm",  # CR of an extremity
    "CT_small.dcm",
    "693_UNCR.dcm",  # CT
    "MR_small.dcm",
    "MR2_UNCR.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",  # MR abdomen
    "JPEG2000.dcm",  # NM whole body
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # ultrasound
]


def flagged(model: runtime.LoadedModel, images: np.ndarray) -> np.ndarray:
    """OOD distances, read in batches of 50 (a worker reads at most its batch size)."""
    out = []
    for start in range(0, len(images), 50):
        distances = model.read(images[start : start + 50].astype(np.float32)).ood_distances
        assert distances is not None
        out.append(distances)
    return np.concatenate(out)


def test_ledoit_wolf_equals_sklearn() -> None:
    x = np.random.default_rng(2).normal(size=(60, 12)) @ np.diag(np.linspace(0.1, 3, 12))
    mean, covariance, shrinkage = ood.ledoit_wolf(x)
    expected, expected_shrinkage = sklearn_ledoit_wolf(x)
    assert np.allclose(covariance, expected) and shrinkage == pytest.approx(expected_shrinkage)
    assert np.allclose(mean, x.mean(axis=0))


def test_demo_gate_is_calibrated_and_flags_what_it_does_not_know(
    demo_model: runtime.LoadedModel,
) -> None:
    reference = demo_model.reference
    assert reference is not None and reference.feature_layer == "global_average_pooling2d"
    assert "validation split (n=450)" in reference.calibration
    images, _ = held_out_set(demo_model.manifest.input)
    held_out = flagged(demo_model, images)
    rng = np.random.default_rng(0)
    noise = rng.random((20, 128, 128, 1))
    gaussian = np.clip(0.5 + 0.2 * rng.standard_normal((20, 128, 128, 1)), 0, 1)
    inverted = 1.0 - images[:50]
    quadrant = np.repeat(np.repeat(images[:50, :64, :64], 2, axis=1), 2, axis=2)
    centre = np.repeat(np.repeat(images[:50, 32:96, 32:96], 2, axis=1), 2, axis=2)
    spec = demo_model.manifest.input
    others = np.stack([preprocess(dcmread(get_testdata_file(n)), spec) for n in NON_CHEST])
    sets = {
        "held-out synthetic (n=400)": held_out,
        "uniform noise": flagged(demo_model, noise),
        "gaussian noise": flagged(demo_model, gaussian),
        "inverted": flagged(demo_model, inverted),
        "cropped: upper-left quadrant": flagged(demo_model, quadrant),
        "cropped: centre half": flagged(demo_model, centre),
        f"non-chest DICOM (n={len(NON_CHEST)})": flagged(demo_model, others),
    }
    rates = {name: float((d > 1).mean()) for name, d in sets.items()}
    print("\nOOD gate of the demo model: share flagged, smallest distance (1.0 = threshold)")
    for name, distances in sets.items():
        print(f"  {name:<32} {rates[name]:6.1%}  min {distances.min():6.2f}")
    assert rates["held-out synthetic (n=400)"] <= 0.05
    recorded = demo_model.manifest.metrics.ood_flagged  # measured when the reference was built
    assert recorded == pytest.approx(rates["held-out synthetic (n=400)"])
    assert all(rate == 1.0 for name, rate in rates.items() if not name.startswith("held-out"))


def test_demo_verdict_on_the_real_chest_cr(demo_model: runtime.LoadedModel) -> None:
    """RG1 (a real adult chest CR) is far from the synthetic training images: the gate says so,
    for every encoding of it. This pins what the data says; it is not a wish."""
    distances = {}
    for name in ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm"):
        image = preprocess(dcmread(get_testdata_file(name)), demo_model.manifest.input)
        reading = demo_model.read(image[None])
        assert reading.ood_distances is not None
        distances[name] = float(reading.ood_distances[0])
        score = float(reading.scores[0])
        print(f"\n{name}: raw score {score:.3f}, OOD distance {distances[name]:.2f}")
    assert all(d > 1.0 for d in distances.values())
    assert abs(distances["RG1_UNCR.dcm"] - distances["RG1_J2KI.dcm"]) < 0.05


def test_an_ood_image_keeps_its_study_from_being_low(pipeline: Pipeline, tmp_path: Path) -> None:
    """A study with a synthetic image scored low and a second image out of distribution (RG1's
    pixels, relabelled as a second view of the same study) is indeterminate, not low."""
    from xraygate.inference.training.synthetic import chest

    image = chest(np.random.default_rng(21), 128, pneumonia=False)
    first = synthetic_cr(tmp_path / "a.dcm", image, study_uid="1.2.826.0.1.3680043.8.505.1")
    ds = dcmread(get_testdata_file("RG1_UNCR.dcm"))
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.505.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.505.2"
    ds.save_as(tmp_path / "b.dcm")
    pipeline.ingest(first)
    handlers = make_handlers(pipeline.settings, pipeline.store, pipeline.queue)
    worker = Worker(pipeline.queue, handlers)
    while worker.run_once():
        pass
    with db.read_session(pipeline.queue.engine) as s:
        [alone] = s.scalars(select(StudyResult)).all()
    assert alone.category == "low" and alone.ood_distance is not None and alone.ood_distance < 1
    pipeline.ingest(tmp_path / "b.dcm")
    while worker.run_once():
        pass
    with db.read_session(pipeline.queue.engine) as s:
        [study] = s.scalars(select(StudyResult)).all()
        images = {r.sop_instance_uid: r for r in s.scalars(select(InstanceResult))}
    assert study.revision == 2 and study.category == "indeterminate"
    assert study.score == alone.score  # the in-distribution image's score
    assert study.ood_distance is not None and study.ood_distance > 1
    assert study.reason.startswith("out-of-distribution: 1 of 2 image(s)")
    assert images["1.2.826.0.1.3680043.8.505.2"].score is None


def test_a_reference_that_does_not_fit_the_model_is_refused(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    target = tmp_path / "model"
    shutil.copytree(DEMO_DIR, target)
    manifest = json.loads((target / "manifest.json").read_text())
    features = manifest["reference"]["ood"]["features"]
    features["mean"] = features["mean"][:10]
    features["precision"] = [row[:10] for row in features["precision"][:10]]
    (target / "manifest.json").write_text(json.dumps(manifest))
    engine = db.get_engine(sqlite_settings.resolved_database_url)
    with pytest.raises(ModelRegistryError, match="does not fit the model"):
        import_model(engine, store_from_settings(sqlite_settings), target)
    features["precision"] = features["precision"][:3]  # not square
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelRegistryError, match="square"):
        import_model(engine, store_from_settings(sqlite_settings), target)
