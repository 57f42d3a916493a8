"""Issue 11, headers and the smaller items: CSP / X-Frame-Options / no-store on what carries
PHI, a private SQLite file, bounded metric labels, 400 (not 500) for hostile FHIR searches, the
feedback author from the caller, credentials inside URL settings masked."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.gateway.conftest import Gateway, gateway_settings, serve
from xraygate.core import db
from xraygate.gateway.app import create_app


def test_security_headers_on_pages_json_and_fhir(gw: Gateway) -> None:
    admin = gw.headers("admin")
    answers = {
        "page": gw.client.get("/login"),
        "json": gw.client.get("/api/me", headers=admin),
        "study": gw.client.get(f"/api/studies/{gw.high.study_uid}", headers=admin | {}),
        "fhir": gw.client.get("/fhir/Patient", headers=admin),
        "refusal": gw.client.get("/api/worklist"),
    }
    for what, answer in answers.items():
        headers = answer.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], what
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store", what
    static = gw.client.get("/static/app.js")
    assert static.status_code == 200 and static.headers.get("cache-control") != "no-store"


def test_templates_have_no_inline_script_or_handlers() -> None:
    """What the CSP forbids (script-src 'self', no 'unsafe-inline') is not in the pages."""
    import re

    templates = Path(__file__).resolve().parents[2] / "xraygate/gateway/web/templates"
    for path in templates.glob("*.html"):
        text = path.read_text()
        assert not re.search(r"\son[a-z]+\s*=", text), path.name
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), path.name
        assert "style=" not in text and "<style" not in text, path.name


def test_sqlite_database_files_are_private(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path / "data")
    path = Path(settings.resolved_database_url.split("///", 1)[1])
    engine = db.get_engine(settings.resolved_database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS probe (x int)")
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    assert path in files and len(files) >= 2  # the database and its WAL
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, (file.name, oct(file.stat().st_mode))


def test_unknown_http_methods_do_not_become_metric_labels(tmp_path: Path) -> None:
    app = create_app(gateway_settings(tmp_path))
    for served in serve(app):
        with httpx.Client(base_url=served.base, timeout=10) as http:
            for n in range(5):
                http.request(f"XMETHOD{n}", "/healthz")
            metrics = http.get("/metrics").text
    assert "XMETHOD" not in metrics
    assert 'method="OTHER"' in metrics


@pytest.mark.parametrize(
    "query",
    [
        {"date": "gt9999-12-31"},
        {"date": "9999-12-31"},
        {"date": "9999-12-31T23:59:59+14:00"},
        {"_lastUpdated": "ge9999-12-31"},
        {"status": ",".join(f"s{n}" for n in range(5000))},
        {"_sort": ",".join(["date"] * 500)},
    ],
    ids=["gt-9999", "eq-9999", "end-of-time", "lastUpdated", "5000-alternatives", "500-sorts"],
)
def test_hostile_searches_get_400_not_500(gw: Gateway, query: dict[str, str]) -> None:
    answer = gw.client.get("/fhir/DiagnosticReport", params=query, headers=gw.headers("admin"))
    assert answer.status_code == 400, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_many_search_parameters_get_400(gw: Gateway) -> None:
    params = [("status", "final")] * 200
    answer = gw.client.get("/fhir/DiagnosticReport", params=params, headers=gw.headers("admin"))
    assert answer.status_code == 400 and answer.json()["issue"][0]["code"] == "too-costly"


def test_feedback_author_is_the_caller_never_the_body(gw: Gateway) -> None:
    url = f"/api/studies/{gw.high.study_uid}/feedback"
    body = {"finding": "confirm", "by": "dr.mallory"}
    answer = gw.client.post(url, json=body, headers=gw.headers("clinician"))
    assert answer.status_code == 201, answer.text
    assert answer.json()["by"] == "dr.house"
    listed = gw.client.get(url, headers=gw.headers("clinician")).json()
    assert [f["by"] for f in listed] == ["dr.house"]


def test_settings_masking_covers_credentials_inside_urls(tmp_path: Path) -> None:
    settings = gateway_settings(
        tmp_path,
        fhir_push_url="https://bot:push-pa55word@ehr.example.org/fhir",
        escalation_webhook_url="https://hooks.example.org/x",
    )
    settings = settings.model_copy(
        update={"database_url": settings.database_url, "storage_url": "s3://u:s3pass@bucket/p"}
    )
    from xraygate.gateway.auth import mint_token

    with TestClient(create_app(settings)) as client:
        admin = {"Authorization": f"Bearer {mint_token(settings, ['admin'], 'root', 60)}"}
        shown = client.get("/api/admin/settings", headers=admin).json()
    text = str(shown)
    for secret in ("push-pa55word", "s3pass"):
        assert secret not in text
    assert shown["fhir_push_url"] == "https://bot:********@ehr.example.org/fhir"
    assert shown["escalation_webhook_url"] == "https://hooks.example.org/x"


def test_database_url_password_is_masked() -> None:
    from xraygate.gateway.api.admin import mask_url

    masked = mask_url("postgresql://xraygate:s3cr%40t@db.example.org:5432/xraygate")
    assert masked == "postgresql://xraygate:********@db.example.org:5432/xraygate"
    assert mask_url("sqlite:////var/x.db") == "sqlite:////var/x.db"
