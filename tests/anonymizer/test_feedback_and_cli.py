"""The feedback API over real HTTP (uvicorn on loopback), and the ``deid``/``feedback`` CLI."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydicom import dcmread
from pydicom.data import get_testdata_file
from sqlalchemy import select
from sqlmodel import col
from typer.testing import CliRunner

from tests.anonymizer.conftest import make_study
from tests.anonymizer.corpus import leaks, to_bytes, write_corpus
from tests.anonymizer.pixel_corpus import burn_in, chest_cr, readable
from xraygate.cli import app
from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.models import Feedback, Job
from xraygate.core.storage import store_from_settings
from xraygate.gateway.api.feedback import router
from xraygate.gateway.auth import Principal, Role
from xraygate.gateway.deps import current_principal

pytestmark = pytest.mark.integration


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    api = FastAPI()
    api.include_router(router)
    clinician = Principal("dr-who", frozenset({Role.CLINICIAN}), "jwt")
    api.dependency_overrides[current_principal] = lambda: clinician  # the app's auth
    port = _port()
    srv = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_feedback_api_over_http(settings: Settings, server: str) -> None:
    engine = db.get_engine(settings.resolved_database_url)
    data = Path(get_testdata_file("RG1_UNCR.dcm")).read_bytes()
    made = make_study(engine, store_from_settings(settings), [data], category="high", score=0.9)
    url = f"{server}/api/studies/{made.study_uid}/feedback"
    with httpx.Client(timeout=10) as client:
        forged = {"finding": "reject", "by": "dr-mallory", "comment": "clear"}
        resp = client.post(url, json=forged)
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert (body["finding"], body["label"]) == ("reject", "NORMAL")
        assert body["agreement"] == "disagree"
        # the author is the authenticated caller, never the body's "by"
        assert body["by"] == "dr-who" and body["model_version"] == "cxr-demo:1.0.0"
        assert client.post(url, json={"finding": "confirm"}).status_code == 201
        listed = client.get(url).json()
        assert [f["finding"] for f in listed] == ["confirm", "reject"]
        assert client.post(url, json={"finding": "maybe"}).status_code == 422
        unknown = f"{server}/api/studies/1.2.3.999/feedback"
        assert client.post(unknown, json={"finding": "confirm"}).status_code == 404
        assert client.get(unknown).status_code == 404
    with db.read_session(engine) as s:
        jobs = list(s.scalars(select(Job).where(col(Job.kind) == "deidentify")))
    assert len(jobs) == 2 and all("feedback_id" in j.payload for j in jobs)


def test_feedback_cli(settings: Settings) -> None:
    engine = db.get_engine(settings.resolved_database_url)
    data = Path(get_testdata_file("RG1_UNCR.dcm")).read_bytes()
    made = make_study(engine, store_from_settings(settings), [data], category="low", score=0.2)
    runner = CliRunner()
    res = runner.invoke(app, ["feedback", made.study_uid, "--finding", "confirm", "--by", "dr-x"])
    assert res.exit_code == 0, res.output
    assert "disagree" in res.output
    with db.read_session(engine) as s:
        (row,) = s.scalars(select(Feedback)).all()
    assert (row.finding, row.author) == ("confirm", "dr-x")
    assert runner.invoke(app, ["feedback", "1.2.3.404", "--finding", "confirm"]).exit_code != 0
    assert runner.invoke(app, ["feedback", made.study_uid, "--finding", "maybe"]).exit_code != 0


def test_deid_cli_writes_outputs_and_quarantines_bad_files(
    tmp_path: Path, sqlite_settings: Settings
) -> None:
    src = tmp_path / "in"
    write_corpus(src, 3)
    (src / "broken.dcm").write_bytes(b"not dicom")
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["deid", str(src), "--out", str(out), "--option", "retain-patient-characteristics",
         "--secret", "cli-secret"],
    )  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "quarantined: 1" in res.output and "de-identified: 3" in res.output
    files = sorted(p for p in out.rglob("*.dcm"))
    assert len(files) == 3
    for path in files:
        data = path.read_bytes()
        assert leaks(data) == []
        ds = dcmread(path)
        assert ds.PatientAge == "061Y"
        assert path.stem == ds.SOPInstanceUID
    (entry,) = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    assert entry["file"].endswith("broken.dcm") and entry["reason"]
    again = tmp_path / "again"
    runner.invoke(app, ["deid", str(src), "--out", str(again), "--secret", "cli-secret"])
    assert sorted(p.name for p in again.rglob("*.dcm")) == [p.name for p in files]  # same UIDs


def test_deid_cli_clean_exit_and_bad_option(tmp_path: Path, sqlite_settings: Settings) -> None:
    runner = CliRunner()
    good = runner.invoke(
        app, ["deid", str(get_testdata_file("RG1_UNCR.dcm")), "--out", str(tmp_path / "o")]
    )
    assert good.exit_code == 0, good.output
    bad = runner.invoke(app, ["deid", str(tmp_path), "--out", str(tmp_path / "x"), "-o", "nope"])
    assert bad.exit_code == 2 and "unknown de-identification option" in bad.output


def test_deid_cli_blanks_or_holds_burned_in_text(tmp_path: Path, sqlite_settings: Settings) -> None:
    ds = chest_cr()
    planted = [burn_in(ds, "VASQUEZ^OSWALD", ("VASQUEZ", "OSWALD"), corner="tl", size=72)]
    assert readable(ds, planted)
    src = tmp_path / "in"
    src.mkdir()
    (src / "cr.dcm").write_bytes(to_bytes(ds))
    runner = CliRunner()
    blank = runner.invoke(app, ["deid", str(src), "--out", str(tmp_path / "b")])
    assert blank.exit_code == 0, blank.output
    assert "de-identified: 1  text blanked: 1" in blank.output
    (path,) = (tmp_path / "b").rglob("*.dcm")
    assert readable(dcmread(path), planted) == []

    hold = runner.invoke(
        app, ["deid", str(src), "--out", str(tmp_path / "h"), "--pixel-phi", "hold"]
    )
    assert hold.exit_code == 0, hold.output
    assert "held: 1" in hold.output and not list((tmp_path / "h").rglob("*.dcm"))
    (entry,) = [json.loads(x) for x in (tmp_path / "h" / "held.jsonl").read_text().splitlines()]
    assert entry["action"] == "held" and entry["regions"] and "VASQUEZ" not in json.dumps(entry)
    assert (tmp_path / "h" / "held" / entry["thumbnail"]).read_bytes().startswith(b"\x89PNG")
    bad = runner.invoke(app, ["deid", str(src), "--out", str(tmp_path / "x"), "--pixel-phi", "x"])
    assert bad.exit_code == 2 and "blank or hold" in bad.output
