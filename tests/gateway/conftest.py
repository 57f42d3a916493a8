"""Gateway test set-up: settings with a known shared key and API keys, a migrated SQLite
database, a local object store holding a real chest CR, seeded studies and role tokens."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file

from tests.results_factory import Made, make_result
from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.storage import store_from_settings
from xraygate.gateway.app import create_app
from xraygate.gateway.auth import hash_api_key, mint_token

SECRET = "test-shared-secret-0123456789abcdef"
API_KEYS = {
    "pacs-bridge": ("ehr", "k-ehr-0123456789"),
    "ops-robot": ("admin", "k-admin-987654"),
    "modality-box": ("modality", "k-modality-24680"),
}
CHEST_CR = Path(str(get_testdata_file("RG1_UNCR.dcm")))


def gateway_settings(tmp: Path, database_url: str | None = None, **extra: object) -> Settings:
    entries = [f"{name}:{role}:{hash_api_key(key)}" for name, (role, key) in API_KEYS.items()]
    settings = Settings(
        data_dir=tmp,
        database_url=database_url or f"sqlite:///{tmp / 'x.db'}",
        min_free_bytes=0,
        auth_shared_secret=SECRET,  # type: ignore[arg-type]
        auth_api_keys=entries,
        **extra,  # type: ignore[arg-type]
    )
    db.upgrade(settings.resolved_database_url)
    return settings


def seed(settings: Settings, **kw: object) -> Made:
    """A study with a result, its instance object being the real chest CR; the model artifact
    present in the store (so /readyz is ready)."""
    engine = db.get_engine(settings.resolved_database_url)
    made = make_result(engine, **kw)  # type: ignore[arg-type]
    store = store_from_settings(settings)
    for uid in made.instance_uids:
        store.put_file(f"objects/{uid}", CHEST_CR)
    if not store.exists("models/x"):
        store.put_bytes("models/x", b"model artifact")
    return made


def token(settings: Settings, *roles: str, subject: str = "tester", scope: str = "") -> str:
    return mint_token(settings, roles, subject, 600, scope)


@dataclass
class Gateway:
    settings: Settings
    app: FastAPI
    client: TestClient
    high: Made
    low: Made
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        if who == "anonymous":
            return {}
        if who.startswith("key:"):
            return {"X-API-Key": API_KEYS[who[4:]][1]}
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    settings = gateway_settings(tmp_path)
    low = seed(
        settings, patient_id="P-LOW", name="LOW^LARA", accession="A-LOW", score=0.2, category="low"
    )
    high = seed(
        settings,
        patient_id="P-HIGH",
        name="HIGH^HUGO",
        accession="A-HIGH",
        score=0.93,
        category="high",
    )
    app = create_app(settings)
    tokens = {
        "admin": token(settings, "admin"),
        "clinician": token(settings, "clinician", subject="dr.house"),
        "ehr": token(settings, "ehr", subject="ehr-system"),
        "ehr-reports-only": token(settings, subject="ehr-2", scope="system/DiagnosticReport.read"),
        "nobody": token(settings, subject="no-roles"),
    }
    with TestClient(app, follow_redirects=False) as client:
        yield Gateway(settings, app, client, high, low, tokens)
    db.get_engine.cache_clear()


@pytest.fixture(scope="session")
def provider_home() -> Path:
    """The OpenID provider of the single sign-on tests, installed once (tests/gateway/oidc)."""
    from tests.gateway.oidc import install

    return install()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    base: str
    server: uvicorn.Server


def serve(app: FastAPI, port: int | None = None) -> Iterator[Served]:
    """Run ``app`` with uvicorn on a loopback port (``port``, else a free one) in a thread."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield Served(f"http://127.0.0.1:{port}", server)
    server.should_exit = True
    thread.join(timeout=10)


def heat_map_png(size: int = 128) -> bytes:
    """An 8-bit grey map like the worker's (:mod:`xraygate.inference.saliency`): a blob at the
    lower right of the image, zero elsewhere."""
    import io

    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0:size] / size
    blob = np.exp(-(((xx - 0.65) ** 2) + (yy - 0.6) ** 2) / 0.02)
    out = io.BytesIO()
    Image.fromarray(np.round(blob * 255).astype(np.uint8), mode="L").save(out, format="PNG")
    return out.getvalue()


def add_saliency(settings: Settings, made: Made) -> str:
    """Store a map for the study's first image and record it with its instance result."""
    from sqlmodel import col, select

    from xraygate.core.models import InstanceResult

    key = f"saliency/test/{made.instance_uids[0]}.png"
    store_from_settings(settings).put_bytes(key, heat_map_png())
    with db.write_session(db.get_engine(settings.resolved_database_url)) as s:
        row = s.scalars(
            select(InstanceResult).where(
                col(InstanceResult.sop_instance_uid) == made.instance_uids[0]
            )
        ).one()
        row.saliency_key = key
        s.add(row)
    return key
