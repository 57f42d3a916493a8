"""Model quality in the gateway: the report API (JSON and FHIR MeasureReports), the admin page
with its SVG trend charts, the per-version gauges on /metrics, the promotion API, and model
events in the audit trail as FHIR AuditEvents. Admin only."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from tests.fhir.r4schema import r4_errors
from tests.gateway.conftest import gateway_settings, token
from tests.quality_factory import A, B, expected, populate
from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.models import StudyResult
from xraygate.gateway.app import create_app

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Settings, TestClient, dict[str, str]]]:
    settings = gateway_settings(tmp_path, model_promote_min_paired=60)
    engine = db.get_engine(settings.resolved_database_url)
    truth = populate(engine)
    now = datetime.now(UTC)
    with db.write_session(engine) as s:  # recent, so inside the page's default 90 days
        for row in s.scalars(select(StudyResult)):
            row.created_at = now - (datetime(2026, 1, 20, tzinfo=UTC) - row.created_at)
            s.add(row)
        # a result under a hostile label: every page and chart must escape it
        s.add(
            StudyResult(
                study_pk=1,
                study_instance_uid="1.2.3",
                model_version="<script>alert(1)</script>:1",
                model_sha256="c" * 64,
                score=0.5,
                category="indeterminate",
                created_at=now,
            )
        )
    headers = {
        "admin": {"Authorization": f"Bearer {token(settings, 'admin', subject='qa-lead')}"},
        "clinician": {"Authorization": f"Bearer {token(settings, 'clinician')}"},
    }
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield settings, client, headers  # type: ignore[misc]
    assert truth.labels
    db.get_engine.cache_clear()


def test_report_api_json_and_measure_reports(
    site: tuple[Settings, TestClient, dict[str, str]],
) -> None:
    settings, client, headers = site
    for path in ("/api/admin/models/report", "/api/admin/models/report/fhir", "/admin/quality"):
        assert client.get(path, headers=headers["clinician"]).status_code == 403
        assert client.get(path).status_code in (401, 303)
    got = client.get(
        "/api/admin/models/report", params={"model": A, "period": "month"}, headers=headers["admin"]
    )
    assert got.status_code == 200, got.text
    [version] = got.json()["versions"]
    assert version["model_version"] == A and version["totals"]["n_labelled"] == 60
    engine = db.get_engine(settings.resolved_database_url)
    from xraygate.core.quality.report import load

    uids = [s.row.study_uid for s in load(engine, model=A)]
    assert len(uids) == 80
    assert client.get(
        "/api/admin/models/report", params={"period": "year"}, headers=headers["admin"]
    ).status_code in (400, 422)
    assert (
        client.get(
            "/api/admin/models/report", params={"since": "yesterday"}, headers=headers["admin"]
        ).status_code
        == 400
    )
    fhir = client.get("/api/admin/models/report/fhir", headers=headers["admin"])
    assert fhir.status_code == 200 and fhir.headers["content-type"].startswith(
        "application/fhir+json"
    )
    body = fhir.json()
    assert body["resourceType"] == "Bundle" and r4_errors(body) == []
    subjects = {e["resource"]["subject"]["display"] for e in body["entry"]}
    assert {A, B} <= subjects


def test_quality_page_draws_the_trends(site: tuple[Settings, TestClient, dict[str, str]]) -> None:
    _settings, client, headers = site
    page = client.get("/admin/quality", params={"period": "day"}, headers=headers["admin"])
    assert page.status_code == 200, page.text
    html = page.text
    i = html.find("<script>alert(1)")
    assert i < 0, html[i - 300 : i + 60]
    assert "&lt;script&gt;" in html
    svgs = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert len(svgs) == 5 * 3  # five charts for A, B and the hostile label
    for svg in svgs:
        root = ET.fromstring(svg)  # well-formed XML
        assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    report = client.get(
        "/api/admin/models/report",
        params={"period": "day", "since": "90d"},
        headers=headers["admin"],
    ).json()
    version = next(v for v in report["versions"] if v["model_version"] == A)
    sensitivity = version["totals"]["sensitivity"]["value"]
    section = html.split(f'data-model="{A}"')[1].split("</section>")[0]
    assert f'data-figure="sensitivity">{sensitivity:.3f}' in section
    days = [p["period"] for p in version["periods"]]
    tips = re.findall(r"<title>sensitivity (\S+): ", section)
    assert tips == [d for d in days if version["periods"][days.index(d)]["sensitivity"]["n"]]
    assert "paired" in html and f"<td>{B}</td><td>{A}</td>" in html
    admin = client.get("/admin", headers=headers["admin"]).text
    assert 'href="/admin/quality"' in admin


def test_gauges_promotion_and_audit_events(
    site: tuple[Settings, TestClient, dict[str, str]],
) -> None:
    settings, client, headers = site
    engine = db.get_engine(settings.resolved_database_url)
    metrics = client.get("/metrics").text
    want = expected(_truth_of(engine), A)["sensitivity"]
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("xraygate_model_sensitivity_ratio{") and f'model_version="{A}"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(want, abs=1e-6)
    [verdict] = client.get("/api/admin/models/promotion", headers=headers["admin"]).json()
    assert verdict["candidate"] == B and verdict["promote"] is True
    done = client.post("/api/admin/models/promote", headers=headers["admin"]).json()
    assert done["promoted"]["candidate"] == B
    back = client.post("/api/admin/models/site-cxr/1/activate", headers=headers["admin"])
    assert back.status_code == 200, back.text
    audit = client.get("/api/admin/audit", headers=headers["admin"]).json()
    assert r4_errors(audit) == []
    events = [
        e["resource"]
        for e in audit["entry"]
        if e["resource"]["subtype"][0]["system"] == "urn:xraygate:model-lifecycle"
    ]
    assert [e["subtype"][0]["code"] for e in events] == ["activate", "promote"]
    activated, promoted = events
    assert promoted["agent"][0]["who"]["display"] == "qa-lead"
    assert promoted["entity"][0]["what"]["display"] == B and promoted["outcome"] == "0"
    assert promoted["type"]["code"] == "110100" and activated["entity"][0]["what"]["display"] == A


def _truth_of(engine: object) -> object:
    """The labels and scores as written (read back from the database, not the report)."""
    from tests.quality_factory import Truth
    from xraygate.core.models import Feedback

    truth = Truth(scores={A: {}, B: {}})
    with db.read_session(engine) as s:  # type: ignore[arg-type]
        for row in s.scalars(select(StudyResult)):
            if row.model_version in truth.scores:
                truth.scores[row.model_version][row.study_instance_uid] = row.score
        for f in s.scalars(select(Feedback).order_by(Feedback.id)):  # type: ignore[arg-type]
            truth.labels[f.study_instance_uid] = int(f.label == "PNEUMONIA")
    return truth
