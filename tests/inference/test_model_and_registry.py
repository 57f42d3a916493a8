"""The bundled demo model and the registry's checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from tests.inference.test_preprocess import as_monochrome2
from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.errors import ModelRegistryError
from xraygate.core.models import ModelState
from xraygate.core.models.results import rollback, set_state
from xraygate.core.storage import store_from_settings
from xraygate.inference import runtime
from xraygate.inference.manifest import load_manifest
from xraygate.inference.preprocess import preprocess
from xraygate.inference.registry import DEMO_DIR, import_model


def score(model: runtime.LoadedModel, name_or_ds: object) -> float:
    ds = dcmread(get_testdata_file(name_or_ds)) if isinstance(name_or_ds, str) else name_or_ds
    image = preprocess(ds, model.manifest.input)  # type: ignore[arg-type]
    return float(model.predict(image[None])[0])


def test_demo_model_is_small_and_says_it_is_a_demo(demo_model: runtime.LoadedModel) -> None:
    manifest = demo_model.manifest
    assert manifest.demo and "not for clinical use" in manifest.intended_use
    assert (DEMO_DIR / manifest.artifact).stat().st_size < 5 * 2**20
    assert manifest.metrics.auroc is not None and manifest.metrics.auroc >= 0.95


def test_rg1_variants_score_alike(demo_model: runtime.LoadedModel) -> None:
    uncompressed = score(demo_model, "RG1_UNCR.dcm")
    assert abs(uncompressed - score(demo_model, "RG1_J2KR.dcm")) < 1e-3
    assert abs(uncompressed - score(demo_model, "RG1_J2KI.dcm")) < 0.02
    mono2 = as_monochrome2(dcmread(get_testdata_file("RG1_UNCR.dcm")))
    assert abs(uncompressed - score(demo_model, mono2)) < 1e-4


def test_batches_match_single_predictions(demo_model: runtime.LoadedModel) -> None:
    from xraygate.inference.training.synthetic import dataset

    images, _ = dataset(16, seed=5)
    batch = demo_model.predict(images)
    single = np.array([demo_model.predict(images[i : i + 1])[0] for i in range(16)])
    assert np.allclose(batch, single, atol=1e-5)


def test_evaluate_cli_reports_auroc_on_held_out_synthetic_set(tmp_path: Path) -> None:
    env = {**os.environ, "XRAYGATE_DATA_DIR": str(tmp_path / "var")}
    env.pop("XRAYGATE_DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "xraygate", "model", "evaluate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    values = dict(line.split(": ", 1) for line in out.stdout.strip().splitlines())
    assert values["model"] == "xraygate-demo-cxr:1.0.0"
    assert float(values["auroc"]) >= 0.95
    assert "synthetic held-out set" in values["evaluated_on"]


def _copy_demo(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(DEMO_DIR, target)
    return target


def test_registry_refuses_a_tampered_artifact(sqlite_settings: Settings, tmp_path: Path) -> None:
    model_dir = _copy_demo(tmp_path)
    artifact = model_dir / load_manifest(model_dir / "manifest.json").artifact
    data = bytearray(artifact.read_bytes())
    data[-10] ^= 0xFF
    artifact.write_bytes(bytes(data))
    engine = db.get_engine(sqlite_settings.resolved_database_url)
    with pytest.raises(ModelRegistryError, match="does not match the manifest"):
        import_model(engine, store_from_settings(sqlite_settings), model_dir)


@pytest.mark.parametrize(
    "change",
    [
        {"sha256": "not-a-hash"},
        {"thresholds": {"high": 0.4, "low": 0.6}},
        {"input": {"height": 64, "width": 64}},
        {"name": ""},
    ],
)
def test_registry_refuses_an_invalid_manifest(
    sqlite_settings: Settings, tmp_path: Path, change: dict[str, object]
) -> None:
    model_dir = _copy_demo(tmp_path)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest.update(change)
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    engine = db.get_engine(sqlite_settings.resolved_database_url)
    with pytest.raises(ModelRegistryError):
        import_model(engine, store_from_settings(sqlite_settings), model_dir)


def test_activate_and_roll_back(settings: Settings, tmp_path: Path) -> None:
    engine = db.get_engine(settings.resolved_database_url)
    store = store_from_settings(settings)
    first = import_model(engine, store, DEMO_DIR)
    second_dir = _copy_demo(tmp_path)
    manifest = json.loads((second_dir / "manifest.json").read_text())
    manifest["version"] = "1.1.0"
    (second_dir / "manifest.json").write_text(json.dumps(manifest))
    second = import_model(engine, store, second_dir)
    assert import_model(engine, store, second_dir).id == second.id, "re-import is idempotent"
    with db.write_session(engine) as session:
        set_state(session, first.name, first.version, ModelState.ACTIVE)
    with db.write_session(engine) as session:
        set_state(session, second.name, second.version, ModelState.ACTIVE)
    with db.write_session(engine) as session:
        back = rollback(session)
        assert back.version == first.version and back.state == ModelState.ACTIVE
    from xraygate.inference.registry import emitting_version

    active = emitting_version(engine, "active")
    assert active is not None and active.version == first.version
    assert store.exists(f"models/{first.name}/1.1.0/model.keras")
