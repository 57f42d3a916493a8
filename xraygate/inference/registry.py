"""The model registry: versions stored in the object store, indexed in ``model_versions``.

Layout in the object store: ``models/<name>/<version>/<artifact>`` and ``.../manifest.json``.
Importing verifies the manifest and the artifact's sha256 (and that it loads with the declared
input); loading for scoring verifies the sha256 again, so a tampered artifact is refused. State
changes (activate, shadow, retire, rollback) are in :mod:`xraygate.core.models.results`.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import col, select

from xraygate.core.config import ModelPolicy, Settings
from xraygate.core.db import read_session, write_session
from xraygate.core.errors import DatabaseError, ModelRegistryError
from xraygate.core.models import ModelState, ModelVersion
from xraygate.core.models.results import emitting_version as emitting_in
from xraygate.core.models.results import set_state
from xraygate.core.storage import ObjectStore
from xraygate.inference import runtime
from xraygate.inference.manifest import Manifest, load_manifest, parse_manifest

DEMO_DIR = Path(__file__).with_name("demo")


def keys(manifest: Manifest) -> tuple[str, str]:
    base = f"models/{manifest.name}/{manifest.version}"
    return f"{base}/{manifest.artifact}", f"{base}/manifest.json"


def import_model(
    engine: Engine, store: ObjectStore, model_dir: Path, *, origin: str = "import"
) -> ModelVersion:
    """Register the model in ``model_dir`` (manifest.json + artifact) as a candidate."""
    manifest = load_manifest(model_dir / "manifest.json")
    artifact = model_dir / manifest.artifact
    if not artifact.is_file():
        raise ModelRegistryError(f"artifact {manifest.artifact} missing beside the manifest")
    runtime.load(artifact, manifest)  # sha256, loadability, input shape
    with read_session(engine) as session:
        existing = session.scalars(
            select(ModelVersion).where(
                col(ModelVersion.name) == manifest.name,
                col(ModelVersion.version) == manifest.version,
            )
        ).first()
    if existing is not None:
        if existing.sha256 == manifest.sha256:
            return existing
        raise ModelRegistryError(f"{manifest.label} is registered with a different artifact")
    artifact_key, manifest_key = keys(manifest)
    store.put_file(artifact_key, artifact)
    store.put_bytes(manifest_key, manifest.dumps().encode())
    row = ModelVersion(
        name=manifest.name,
        version=manifest.version,
        sha256=manifest.sha256,
        object_key=artifact_key,
        manifest=manifest.model_dump(mode="json"),
        state=ModelState.CANDIDATE,
        auroc=manifest.metrics.auroc,
        origin=origin[:500],
    )
    with write_session(engine) as session:
        session.add(row)
    return row


def ensure_default_model(settings: Settings, engine: Engine, store: ObjectStore) -> None:
    """On a fresh install, register and activate the bundled demonstration model."""
    if not settings.bundled_demo_model:
        return
    with read_session(engine) as session:
        if session.scalars(select(ModelVersion)).first() is not None:
            return
    try:
        row = import_model(engine, store, DEMO_DIR, origin="bundled")
    except DatabaseError:
        return  # another worker process registered it at the same moment
    with write_session(engine) as session:
        set_state(session, row.name, row.version, ModelState.ACTIVE)


def emitting_version(engine: Engine, policy: ModelPolicy) -> ModelVersion | None:
    """The version whose results are emitted (the query is shared with the gateway's checks)."""
    with read_session(engine) as session:
        return emitting_in(session, policy)


def shadow_versions(engine: Engine) -> list[ModelVersion]:
    with read_session(engine) as session:
        query = select(ModelVersion).where(col(ModelVersion.state) == ModelState.SHADOW)
        return list(session.scalars(query))


class ModelCache:
    """Loaded models by sha256, fetched from the store into ``<data_dir>/model-cache``."""

    def __init__(self, store: ObjectStore, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self._models: dict[str, runtime.LoadedModel] = {}
        self._lock = threading.Lock()

    def get(self, version: ModelVersion) -> runtime.LoadedModel:
        with self._lock:
            if version.sha256 not in self._models:
                self._models[version.sha256] = self._load(version)
            return self._models[version.sha256]

    def _load(self, version: ModelVersion) -> runtime.LoadedModel:
        manifest = parse_manifest(_json(version))
        if manifest.sha256 != version.sha256:
            raise ModelRegistryError(f"{manifest.label}: manifest and index disagree on sha256")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        local = self.cache_dir / f"{version.sha256}.keras"
        if not local.is_file() or _sha(local) != version.sha256:
            self.store.download(version.object_key, local)
        return runtime.load(local, manifest)


def _json(version: ModelVersion) -> str:
    import json

    return json.dumps(version.manifest)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
