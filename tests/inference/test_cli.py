"""`xraygate results` and `xraygate model` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.inference.conftest import Pipeline
from xraygate.core.worker import Worker
from xraygate.inference.worker import make_handlers

pytestmark = pytest.mark.integration


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "XRAYGATE_DATA_DIR": str(pipeline.settings.data_dir),
        "XRAYGATE_DATABASE_URL": pipeline.settings.resolved_database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "xraygate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_results_and_model_commands(pipeline: Pipeline) -> None:
    chest = pipeline.ingest(Path(get_testdata_file("RG1_UNCR.dcm")))
    ct = pipeline.ingest(Path(get_testdata_file("CT_small.dcm")))
    worker = Worker(
        pipeline.queue, make_handlers(pipeline.settings, pipeline.store, pipeline.queue)
    )
    while worker.run_once():
        pass
    out = cli(pipeline, "results", "--json")
    assert out.returncode == 0, out.stderr
    results = {r["study_instance_uid"]: r for r in json.loads(out.stdout)}
    assert results[chest]["category"] in ("high", "indeterminate", "low")
    assert results[chest]["model_version"] == "xraygate-demo-cxr:1.0.0"
    assert results[chest]["demo_model"] is True
    assert results[ct]["category"] == "not-applicable"
    assert results[ct]["reason"] == "modality CT is not a radiograph we read"
    plain = cli(pipeline, "results").stdout
    assert "xraygate-demo-cxr:1.0.0 (demo)" in plain and "not-applicable" in plain
    listing = cli(pipeline, "model", "list").stdout
    assert "xraygate-demo-cxr:1.0.0" in listing and "active" in listing
    assert "DEMO - not for clinical use" in listing
    rollback = cli(pipeline, "model", "rollback")
    assert rollback.returncode == 2
    assert "no earlier active version" in rollback.stderr
    missing = cli(pipeline, "model", "activate", "nope:1")
    assert missing.returncode == 2 and "no model version nope:1" in missing.stderr
