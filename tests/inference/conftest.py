"""Inference fixtures: the bundled demo model (loaded once), and an ingest helper."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from xraygate.core.config import Settings
from xraygate.core.ingest import Ingestor, Received
from xraygate.core.queue import JobQueue
from xraygate.core.storage import ObjectStore, store_from_settings
from xraygate.inference import runtime
from xraygate.inference.manifest import load_manifest
from xraygate.inference.registry import DEMO_DIR


@pytest.fixture(scope="session")
def demo_model() -> runtime.LoadedModel:
    manifest = load_manifest(DEMO_DIR / "manifest.json")
    return runtime.load(DEMO_DIR / manifest.artifact, manifest)


class Pipeline:
    """Index + store + queue on the test's settings; ingest files as the SCP would."""

    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.settings = settings
        self.store: ObjectStore = store_from_settings(settings)
        self.queue = JobQueue.from_settings(settings)
        self.tmp = tmp
        self.ingestor = Ingestor(settings, self.store, self.queue)

    def ingest(self, path: Path) -> str:
        spool = self.tmp / f"spool-{path.name}"
        shutil.copyfile(path, spool)
        ds = dcmread(spool, stop_before_pixels=True)
        outcome = self.ingestor.ingest(
            Received(spool, "TEST", str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        )
        assert outcome.status == 0, outcome
        assert self.ingestor.flush(), "the journaled instance was not indexed"
        return str(ds.StudyInstanceUID)


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    running = Pipeline(settings, tmp_path)
    yield running
    running.ingestor.close()
