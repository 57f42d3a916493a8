"""Signed model distribution: publish at the centre, pull at a site (its own data dir and
database), verified by signature and sha256, imported as shadow, every step audited; tampered
files and untrusted signatures refused. A directory source and an S3 (moto) source."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select
from typer.testing import CliRunner

from xraygate.cli import app
from xraygate.core import db
from xraygate.core.config import Settings, get_settings
from xraygate.core.jobs import JobKind
from xraygate.core.models import AuditRecord, Job, JobState, ModelVersion
from xraygate.core.queue import JobQueue
from xraygate.core.storage import ObjectStore, open_store, store_from_settings
from xraygate.core.worker import Worker
from xraygate.inference import distribution, signing
from xraygate.inference.registry import DEMO_DIR, import_model
from xraygate.inference.worker import make_handlers

pytestmark = pytest.mark.integration
LABEL = "xraygate-demo-cxr:1.1.0"


@dataclass
class Site:
    settings: Settings
    engine: Engine
    store: ObjectStore

    def versions(self) -> dict[str, ModelVersion]:
        with db.read_session(self.engine) as s:
            return {r.label: r for r in s.scalars(select(ModelVersion))}

    def audit(self) -> list[AuditRecord]:
        with db.read_session(self.engine) as s:
            query = select(AuditRecord).where(col(AuditRecord.method) == "MODEL")
            return list(s.scalars(query.order_by(col(AuditRecord.id))))


def make_site(root: Path, **extra: object) -> Site:
    values: dict[str, object] = {
        "data_dir": root,
        "database_url": f"sqlite:///{root / 'xraygate.db'}",
        "bundled_demo_model": False,
        "min_free_bytes": 0,
        **extra,
    }
    settings = Settings(**values)  # type: ignore[arg-type]
    url = settings.resolved_database_url
    db.upgrade(url)
    return Site(settings, db.get_engine(url), store_from_settings(settings))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[signing.KeyPair, signing.KeyPair]:
    root = tmp_path_factory.mktemp("keys")
    return signing.generate(root, "centre"), signing.generate(root, "stranger")


@pytest.fixture
def centre(tmp_path: Path) -> Site:
    """The central site with a version 1.1.0 (the demo weights under a new version)."""
    site = make_site(tmp_path / "centre")
    model_dir = tmp_path / "release-src"
    shutil.copytree(DEMO_DIR, model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["version"] = "1.1.0"
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    import_model(site.engine, site.store, model_dir)
    return site


def publish(centre: Site, key: signing.KeyPair, url: str) -> distribution.Release:
    target = distribution.source_store(centre.settings, url)
    private = signing.load_private(key.private_file)
    return distribution.publish(
        centre.engine, centre.store, target, url, LABEL, private, actor="cli:central"
    )


def test_publish_then_pull_imports_a_verified_shadow(
    centre: Site, keys: tuple[signing.KeyPair, signing.KeyPair], tmp_path: Path
) -> None:
    trusted, _ = keys
    source = str(tmp_path / "releases")
    release = publish(centre, trusted, source)
    folder = tmp_path / "releases" / "xraygate-demo-cxr" / "1.1.0"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["manifest.json", "model.keras", "release.json", "release.sig"]
    assert release.key_id == trusted.key_id
    [published] = centre.audit()
    assert (published.route, published.path, published.status) == ("model publish", LABEL, 200)
    assert f"key={trusted.key_id}" in published.query and source in published.query
    edge = make_site(tmp_path / "edge", model_trusted_keys=[trusted.public])
    [outcome] = distribution.pull(edge.settings, edge.engine, edge.store, source, actor="t")
    assert outcome.status == "imported", outcome
    row = edge.versions()[LABEL]
    assert row.state == "shadow" and row.sha256 == release.artifact.sha256
    assert row.origin == f"pull:{source} key={trusted.key_id}"
    [pulled] = edge.audit()
    assert (pulled.route, pulled.status) == ("model pull", 200)
    assert "imported as shadow" in pulled.query
    # a second pull finds nothing new, and writes nothing
    [again] = distribution.pull(edge.settings, edge.engine, edge.store, source, actor="t")
    assert again.status == "present" and len(edge.audit()) == 1
    # publishing the same release again is idempotent; another artifact under it is refused
    publish(centre, trusted, source)


@pytest.mark.parametrize("attack", ["artifact", "manifest", "release", "untrusted-key"])
def test_tampered_or_untrusted_releases_are_refused(
    centre: Site, keys: tuple[signing.KeyPair, signing.KeyPair], tmp_path: Path, attack: str
) -> None:
    trusted, stranger = keys
    source = tmp_path / "releases"
    publish(centre, stranger if attack == "untrusted-key" else trusted, str(source))
    folder = source / "xraygate-demo-cxr" / "1.1.0"
    if attack == "artifact":
        data = bytearray((folder / "model.keras").read_bytes())
        data[-100] ^= 0x01
        (folder / "model.keras").write_bytes(bytes(data))
    elif attack == "manifest":  # lower the high threshold: would escalate more studies
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["thresholds"]["high"] = 0.61
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    elif attack == "release":  # point the signed release at other digests
        release = json.loads((folder / "release.json").read_text())
        release["artifact"]["sha256"] = "0" * 64
        (folder / "release.json").write_text(json.dumps(release, indent=2))
    edge = make_site(tmp_path / "edge", model_trusted_keys=[trusted.public])
    for _ in range(2):  # refused again on the next pull, audited once
        [outcome] = distribution.pull(
            edge.settings, edge.engine, edge.store, str(source), actor="t"
        )
        assert outcome.status == "refused"
    expected = {
        "artifact": "model.keras: sha256",
        "manifest": "manifest.json: sha256",
        "release": "signature does not verify",
        "untrusted-key": "signature does not verify",
    }[attack]
    assert expected in outcome.detail
    assert edge.versions() == {}
    [refusal] = edge.audit()
    assert (refusal.route, refusal.path, refusal.status) == ("model refuse", LABEL, 403)
    assert expected in refusal.query


def test_cli_keygen_publish_pull_over_s3(
    centre: Site,
    keys: tuple[signing.KeyPair, signing.KeyPair],
    tmp_path: Path,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = CliRunner()
    s3 = {
        "XRAYGATE_MODEL_SOURCE_S3_ENDPOINT_URL": s3_endpoint,
        "XRAYGATE_MODEL_SOURCE_S3_ACCESS_KEY_ID": "testing",
        "XRAYGATE_MODEL_SOURCE_S3_SECRET_ACCESS_KEY": "testing",
    }
    for name, value in s3.items():
        monkeypatch.setenv(name, value)
    generated = runner.invoke(app, ["model", "keygen", "--out", str(tmp_path / "k")])
    assert generated.exit_code == 0, generated.output
    public = generated.output.split("XRAYGATE_MODEL_TRUSTED_KEYS=")[1].strip()
    url = f"s3://models-{uuid.uuid4().hex[:12]}/releases"
    monkeypatch.setenv("XRAYGATE_DATA_DIR", str(centre.settings.data_dir))
    monkeypatch.setenv("XRAYGATE_DATABASE_URL", centre.settings.resolved_database_url)
    get_settings.cache_clear()
    key = str(tmp_path / "k" / "model-signing.pem")
    published = runner.invoke(app, ["model", "publish", LABEL, "--to", url, "--key", key])
    assert published.exit_code == 0, published.output
    assert f"published {LABEL} to {url}" in published.output
    bucket = distribution.source_store(get_settings(), url)
    assert distribution.releases(bucket) == ["xraygate-demo-cxr/1.1.0"]
    edge = tmp_path / "edge"
    monkeypatch.setenv("XRAYGATE_DATA_DIR", str(edge))
    monkeypatch.setenv("XRAYGATE_DATABASE_URL", f"sqlite:///{edge / 'xraygate.db'}")
    monkeypatch.setenv("XRAYGATE_MODEL_TRUSTED_KEYS", keys[1].public)  # not the signer
    get_settings.cache_clear()
    refused = runner.invoke(app, ["model", "pull", "--from", url])
    assert refused.exit_code == 1 and "refused" in refused.output
    monkeypatch.setenv("XRAYGATE_MODEL_TRUSTED_KEYS", f"{keys[1].public},{public}")
    get_settings.cache_clear()
    pulled = runner.invoke(app, ["model", "pull", "--from", url])
    assert pulled.exit_code == 0, pulled.output
    assert f"{LABEL}: imported" in pulled.output
    listed = runner.invoke(app, ["model", "list", "--json"])
    assert json.loads(listed.output)[0]["state"] == "shadow"
    get_settings.cache_clear()


def test_periodic_model_sync_job_pulls_and_reschedules(
    centre: Site, keys: tuple[signing.KeyPair, signing.KeyPair], tmp_path: Path
) -> None:
    source = str(tmp_path / "releases")
    publish(centre, keys[0], source)
    edge = make_site(
        tmp_path / "edge",
        model_source_url=source,
        model_trusted_keys=[keys[0].public],
        model_pull_interval_seconds=3600,
        bundled_demo_model=True,
    )
    queue = JobQueue(edge.engine)
    worker = Worker(queue, make_handlers(edge.settings, edge.store, queue))
    make_handlers(edge.settings, edge.store, queue)  # a second worker process: same slot
    with db.read_session(edge.engine) as s:
        [first] = s.scalars(select(Job).where(col(Job.kind) == JobKind.MODEL_SYNC)).all()
    assert worker.run_once()
    with db.read_session(edge.engine) as s:
        query = select(Job).where(col(Job.kind) == JobKind.MODEL_SYNC)
        jobs = list(s.scalars(query.order_by(col(Job.id))))
    assert [j.state for j in jobs] == [JobState.DONE, JobState.PENDING]
    slot = int(first.dedupe_key.rsplit(":", 1)[1])
    assert jobs[1].dedupe_key == f"{JobKind.MODEL_SYNC.value}:{slot + 1}"
    assert jobs[1].payload == {"slot": slot + 1}
    versions = edge.versions()
    assert versions[LABEL].state == "shadow"
    assert versions["xraygate-demo-cxr:1.0.0"].state == "active"
    [pulled] = edge.audit()
    assert pulled.auth_method == "job" and pulled.actor.startswith("worker:")


def test_release_files_are_only_read_below_the_source(tmp_path: Path) -> None:
    """A release folder name cannot escape the store (keys are checked by the store)."""
    store = open_store(str(tmp_path / "releases"))
    store.put_bytes("a/b/release.sig", b"x")
    store.put_bytes("a/b/c/release.sig", b"x")  # too deep: not a release
    assert distribution.releases(store) == ["a/b"]
