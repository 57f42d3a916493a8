"""The continual-improvement loop, edge -> centre -> edge, through the real queue and HTTP API.

1. Site A (its own data dir and database) scores a labelled synthetic set with version A (the
   bundled demo model); clinicians give their findings over the feedback API; ``xraygate model
   report`` equals scikit-learn on the same labels and the stored categories and scores.
2. The centre (its own data dir and database) pulls site A's de-identified, labelled exports,
   trains version B on them (tiny: 64x64, 3 epochs) and publishes it, signed.
3. Site B (its own data dir and database) refuses a tampered artifact and a release signed with
   an untrusted key, then its periodic model-sync job pulls B and imports it as shadow; site B
   scores the set with A (active) and B (shadow); after feedback, the report pairs A and B on
   the same studies, each equal to scikit-learn.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from pydicom import dcmread
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from sqlmodel import col, select
from typer.testing import CliRunner

from tests.synthetic_cr import synthetic_cr
from xraygate.cli import app
from xraygate.core import db
from xraygate.core.config import Settings, get_settings
from xraygate.core.ingest import Ingestor, Received
from xraygate.core.models import AuditRecord, ModelVersion
from xraygate.core.queue import JobQueue
from xraygate.core.storage import store_from_settings
from xraygate.core.worker import Worker
from xraygate.gateway.auth import hash_api_key
from xraygate.inference.training.synthetic import dataset
from xraygate.service import job_handlers

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]
CLINICIAN_KEY = "loop-clinician-key-0123456789"
DEMO = "xraygate-demo-cxr:1.0.0"
B = "site-cxr:2"
runner = CliRunner()


@dataclass
class Site:
    root: Path
    env: dict[str, str]
    labels: dict[str, int] = field(default_factory=dict)  # study uid -> clinician's finding

    @classmethod
    def make(cls, root: Path, **extra: str) -> Site:
        env = {
            "XRAYGATE_DATA_DIR": str(root),
            "XRAYGATE_DATABASE_URL": f"sqlite:///{root / 'xraygate.db'}",
            "XRAYGATE_MIN_FREE_BYTES": "0",
            "XRAYGATE_AUTH_API_KEYS": f"ward:clinician:{hash_api_key(CLINICIAN_KEY)}",
            "XRAYGATE_AUTH_SHARED_SECRET": "loop-test-shared-secret-0123456789",
            "XRAYGATE_EXPORT_CATEGORIES": "high,indeterminate,low",
            **extra,
        }
        return cls(root, env)

    @contextmanager
    def active(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
        with monkeypatch.context() as patch:
            for name, value in self.env.items():
                patch.setenv(name, value)
            get_settings.cache_clear()
            try:
                yield get_settings()
            finally:
                get_settings.cache_clear()

    def cli(self, monkeypatch: pytest.MonkeyPatch, *args: str, code: int = 0) -> str:
        with self.active(monkeypatch):
            result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.output


def run_workers(settings: Settings) -> None:
    db.upgrade(settings.resolved_database_url)
    queue = JobQueue.from_settings(settings)
    handlers = job_handlers(settings, store_from_settings(settings), queue)
    worker = Worker(queue, handlers, worker_id="loop-worker")
    while worker.run_once():
        pass


def ingest_set(settings: Settings, folder: Path) -> list[str]:
    """The labelled synthetic set (64 studies) through the SCP's durable ingest path."""
    db.upgrade(settings.resolved_database_url)
    queue = JobQueue.from_settings(settings)
    ingestor = Ingestor(settings, store_from_settings(settings), queue)
    uids = []
    for path in sorted(folder.glob("*.dcm")):
        spool = settings.data_dir / f"spool-{path.name}"
        shutil.copyfile(path, spool)
        ds = dcmread(spool, stop_before_pixels=True)
        outcome = ingestor.ingest(Received(spool, "MODALITY", ds.SOPClassUID, ds.SOPInstanceUID))
        assert outcome.status == 0, outcome
        uids.append(str(ds.StudyInstanceUID))
    ingestor.close()  # commits the journaled index rows and jobs
    return uids


@contextmanager
def gateway(settings: Settings) -> Iterator[str]:
    from xraygate.gateway.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def give_feedback(site: Site, settings: Settings, truth: dict[str, int]) -> None:
    """Every study's finding, POSTed by a clinician over HTTP."""
    with gateway(settings) as base, httpx.Client(base_url=base, timeout=10) as client:
        for uid, label in truth.items():
            response = client.post(
                f"/api/studies/{uid}/feedback",
                json={"finding": "confirm" if label else "reject", "by": "dr-ward"},
                headers={"X-API-Key": CLINICIAN_KEY},
            )
            assert response.status_code == 201, response.text
            site.labels[uid] = label


def sklearn_figures(results: list[dict[str, Any]], labels: dict[str, int], version: str) -> dict:
    """The report's figures, computed independently from `xraygate results --json`."""
    rows = [r for r in results if r["model_version"] == version]
    y = np.array([labels[r["study_instance_uid"]] for r in rows])
    cat = np.array([r["category"] for r in rows])
    high, low = cat == "high", cat == "low"
    scored = np.array([r["score"] is not None for r in rows])
    scores = np.array([r["score"] if r["score"] is not None else np.nan for r in rows])
    return {
        "n": len(rows),
        "sensitivity": recall_score(y, high),
        "specificity": recall_score(1 - y, ~high),
        "ppv_high": precision_score(y, high, zero_division=np.nan),
        "npv_low": precision_score(1 - y[low], np.ones(low.sum()), zero_division=np.nan)
        if low.any()
        else None,
        "agreement": float(np.mean((high & (y == 1)) | (low & (y == 0)))),
        "auroc": roc_auc_score(y[scored], scores[scored]),
    }


def assert_report_matches(report_figures: dict[str, Any], want: dict[str, Any]) -> None:
    assert report_figures["n_labelled"] == want["n"]
    for key in ("sensitivity", "specificity", "agreement"):
        assert report_figures[key]["value"] == pytest.approx(want[key], abs=1e-6), key
    for key in ("ppv_high", "npv_low"):
        if want[key] is None or np.isnan(want[key]):
            assert report_figures[key]["value"] is None, key
        else:
            assert report_figures[key]["value"] == pytest.approx(want[key], abs=1e-6), key
    assert report_figures["auroc"]["value"] == pytest.approx(want["auroc"], abs=1e-6)


def test_the_loop_edge_centre_edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = dataset(48, seed=77)
    cases = tmp_path / "cases"
    cases.mkdir()
    truth_by_file = {}
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = synthetic_cr(cases / f"{i:03d}.dcm", image, patient_id=f"P{i:04d}")
        truth_by_file[path.name] = int(label)

    # 1. site A scores the set with the demo model; clinicians label it over the API
    site_a = Site.make(tmp_path / "site-a")
    with site_a.active(monkeypatch) as settings_a:
        uids = ingest_set(settings_a, cases)
        truth = dict(zip(uids, truth_by_file.values(), strict=True))
        run_workers(settings_a)
        give_feedback(site_a, settings_a, truth)
        run_workers(settings_a)  # the re-exports carrying the clinicians' labels
    report_a = json.loads(site_a.cli(monkeypatch, "model", "report", "--json"))
    results_a = json.loads(site_a.cli(monkeypatch, "results", "--json", "--limit", "500"))
    [version_a] = report_a["versions"]
    assert version_a["model_version"] == DEMO and version_a["state"] == "active"
    assert_report_matches(version_a["totals"], sklearn_figures(results_a, truth, DEMO))
    print("\nsite A, demo model:", _summary(version_a["totals"]))

    # 2. the centre trains B on site A's de-identified labelled exports and publishes it
    centre = Site.make(
        tmp_path / "centre",
        XRAYGATE_EXPORT_STORAGE_URL=str(site_a.root / "export"),
        XRAYGATE_BUNDLED_DEMO_MODEL="false",
    )
    pulled = centre.cli(monkeypatch, "export-pull", str(tmp_path / "train"))
    assert f"pulled {len(uids)} labelled images" in pulled
    counts = {d.name: len(list(d.iterdir())) for d in (tmp_path / "train").iterdir()}
    assert counts == {"PNEUMONIA": sum(truth.values()), "NORMAL": len(uids) - sum(truth.values())}
    trained = centre.cli(
        monkeypatch,
        "model",
        "train",
        str(tmp_path / "train"),
        "--name",
        "site-cxr",
        "--version",
        "2",
        "--epochs",
        "3",
        "--size",
        "64",
    )
    assert f"trained and imported {B} (candidate)" in trained
    keys = tmp_path / "keys"
    public = centre.cli(monkeypatch, "model", "keygen", "--out", str(keys)).split("=", 1)[1]
    releases = tmp_path / "releases"
    centre.cli(
        monkeypatch,
        "model",
        "publish",
        B,
        "--to",
        str(releases),
        "--key",
        str(keys / "model-signing.pem"),
    )

    # 3. site B refuses tampered and untrusted releases, then pulls B and runs it in shadow
    stranger = tmp_path / "stranger"
    shutil.copytree(releases, tmp_path / "tampered")
    artifact = tmp_path / "tampered" / "site-cxr" / "2" / "model.keras"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the weights
    artifact.write_bytes(bytes(data))
    shutil.copytree(releases, stranger)
    (stranger / "site-cxr" / "2" / "release.sig").write_bytes(b"AAAA" * 22 + b"\n")
    site_b = Site.make(
        tmp_path / "site-b",
        XRAYGATE_MODEL_TRUSTED_KEYS=public.strip(),
        XRAYGATE_MODEL_SOURCE_URL=str(releases),
    )
    refused = site_b.cli(monkeypatch, "model", "pull", "--from", str(tmp_path / "tampered"), code=1)
    assert "model.keras: sha256" in refused
    refused = site_b.cli(monkeypatch, "model", "pull", "--from", str(stranger), code=1)
    assert "signature does not verify" in refused
    with site_b.active(monkeypatch) as settings_b:
        run_workers(settings_b)  # the model-sync job pulls B
        engine_b = db.get_engine(settings_b.resolved_database_url)
        with db.read_session(engine_b) as s:
            states = {r.label: r.state for r in s.scalars(select(ModelVersion))}
            audit = [
                (r.route, r.status)
                for r in s.scalars(
                    select(AuditRecord)
                    .where(col(AuditRecord.method) == "MODEL")
                    .order_by(col(AuditRecord.id))
                )
            ]
        assert states == {DEMO: "active", B: "shadow"}
        assert audit == [("model refuse", 403), ("model refuse", 403), ("model pull", 200)]
        uids_b = ingest_set(settings_b, cases)
        truth_b = dict(zip(uids_b, truth_by_file.values(), strict=True))
        run_workers(settings_b)
        give_feedback(site_b, settings_b, truth_b)
    report_b = json.loads(site_b.cli(monkeypatch, "model", "report", "--json"))
    results_b = json.loads(site_b.cli(monkeypatch, "results", "--json", "--limit", "500"))
    by_version = {v["model_version"]: v for v in report_b["versions"]}
    assert by_version[B]["state"] == "shadow"
    for version in (DEMO, B):
        assert_report_matches(
            by_version[version]["totals"], sklearn_figures(results_b, truth_b, version)
        )
    [pair] = report_b["paired"]
    assert (pair["baseline"], pair["candidate"], pair["n_paired"]) == (DEMO, B, len(uids))
    sens = pair["difference"]["sensitivity"]["value"]
    want = sklearn_figures(results_b, truth_b, B)["sensitivity"]
    assert sens == pytest.approx(want - sklearn_figures(results_b, truth_b, DEMO)["sensitivity"])
    text = site_b.cli(monkeypatch, "model", "report")
    assert f"paired: {B} vs {DEMO} on {len(uids)} labelled studies" in text
    verdict = site_b.cli(monkeypatch, "model", "promote", "--dry-run", "--min-paired", "10")
    assert f"{B} vs {DEMO}: " in verdict
    print("site B, demo model:", _summary(by_version[DEMO]["totals"]))
    print("site B, site-cxr:2:", _summary(by_version[B]["totals"]))
    print("verdict:", verdict.strip())


def _summary(figures: dict[str, Any]) -> str:
    def v(key: str) -> str:
        value = (figures.get(key) or {}).get("value")
        return "-" if value is None else f"{value:.3f}"

    return (
        f"n={figures['n_labelled']} sens={v('sensitivity')} spec={v('specificity')} "
        f"agree={v('agreement')} auroc={v('auroc')} indet={v('indeterminate_share')} "
        f"ood={v('ood_share')}"
    )
