"""API docs a person can open (issue 12): Swagger UI at /docs and ReDoc at /redoc for an
authenticated caller, assets served from this process (no CDN), and every route's OpenAPI entry
lists the refusals it really answers, with the error model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.gateway.conftest import Gateway


def test_docs_need_a_caller_and_load_nothing_from_elsewhere(gw: Gateway) -> None:
    for path in ("/docs", "/redoc"):
        anonymous = gw.client.get(path)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith(
            f"/login?next={path}"
        )
        page = gw.client.get(path, headers=gw.headers("clinician"))
        assert page.status_code == 200 and "/api/openapi.json" in page.text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        urls += re.findall(r"""url: ?["']([^"']+)["']""", page.text)
        assert urls and all(u.startswith("/") for u in urls), urls
        assert "cdn" not in page.text.lower() and "googleapis" not in page.text
        for asset in (u for u in urls if u.startswith("/docs/assets/")):
            got = gw.client.get(asset)
            assert got.status_code == 200 and len(got.content) > 1000, asset


def test_openapi_lists_each_routes_real_refusals(gw: Gateway) -> None:
    spec = gw.client.get("/api/openapi.json", headers=gw.headers("clinician")).json()
    schemas = spec["components"]["schemas"]
    assert schemas["ErrorBody"]["required"] == ["detail"]
    assert "OperationOutcome" in schemas
    study = spec["paths"]["/api/studies/{study_uid}"]["get"]["responses"]
    assert {"401", "403", "404", "422"} <= set(study)
    assert study["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    fhir_read = spec["paths"]["/fhir/{resource_type}/{resource_id}"]["get"]["responses"]
    assert {"401", "403", "404"} <= set(fhir_read)
    ref = fhir_read["404"]["content"]["application/fhir+json"]["schema"]["$ref"]
    assert ref.endswith("/OperationOutcome")
    authed = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            public = path == "/fhir/metadata" or path.startswith("/fhir/CodeSystem")
            if path.startswith(("/api/", "/fhir/", "/dicomweb/")) and not public:
                assert {"401", "403"} <= set(op["responses"]), f"{method} {path}"
                authed += 1
    assert authed > 20
    # a route says only what it answers: the probe and the public FHIR metadata need no caller
    assert "401" not in spec["paths"]["/healthz"]["get"]["responses"]
    assert "401" not in spec["paths"]["/fhir/metadata"]["get"]["responses"]


def test_docs_render_in_chromium_under_the_csp(tmp_path: Path) -> None:
    """Swagger UI lists the operations and ReDoc renders, with the gateway's headers on."""
    from playwright.sync_api import sync_playwright

    from tests.gateway.conftest import gateway_settings, seed, serve, token
    from tests.gateway.test_browser import ARGS, CHROMIUM
    from xraygate.gateway.app import create_app

    settings = gateway_settings(tmp_path / "var")
    seed(settings)
    shots = tmp_path / "screens"
    shots.mkdir()
    print(f"\napi docs screenshots: {shots}")
    errors: list[str] = []
    for served in serve(create_app(settings)):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{served.base}/login?next=/docs")
            page.fill("#credential", token(settings, "clinician"))
            page.click("#login")
            page.wait_for_url("**/docs")
            page.wait_for_selector(".opblock", timeout=60000)
            assert page.locator(".opblock").count() > 20
            page.screenshot(path=str(shots / "docs.png"))
            page.goto(f"{served.base}/redoc")
            page.wait_for_selector("[data-section-id]", timeout=60000)
            page.screenshot(path=str(shots / "redoc.png"))
            browser.close()
    # ReDoc's bundle asks for its "powered by" logo from cdn.redoc.ly: the CSP blocks it, so
    # nothing is fetched from elsewhere; no script or style of ours is refused.
    refused = [e for e in errors if "Content Security Policy" in e]
    assert all("https://cdn.redoc.ly/" in e and "img-src" in e for e in refused), refused
    assert (shots / "docs.png").stat().st_size > 5000


SIGN_IN_FLOW = {"/login/oidc/callback"}


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def _concrete(path: str) -> str:
    """A request path for a templated one (the refusals tested here come before any lookup)."""
    return re.sub(r"\{[a-z_]+\}", "1", path.replace("{resource_type}", "Patient"))


def _documented_media(op: dict[str, Any], status: str) -> str:
    [media] = op["responses"][status]["content"]
    return str(media)


def test_every_body_operation_documents_the_body_limit_and_gets_it(tmp_path: Path) -> None:
    """Every operation that takes a body lists 413 with the body the limit really sends; each is
    sent one byte over its limit (before authentication, so anonymously) and gets exactly that."""
    from fastapi.testclient import TestClient

    from tests.gateway.conftest import gateway_settings, token
    from xraygate.gateway.app import create_app

    settings = gateway_settings(
        tmp_path / "var", http_max_body_bytes=1024, dicomweb_max_request_bytes=4096
    )
    client = TestClient(create_app(settings), follow_redirects=False)
    auth = {"Authorization": f"Bearer {token(settings, 'clinician')}"}
    spec = client.get("/api/openapi.json", headers=auth).json()
    body_ops = [
        (method, path, op)
        for method, path, op in _operations(spec)
        if method in ("POST", "PUT", "PATCH") or "requestBody" in op
    ]
    names = {f"{method} {path}" for method, path, _ in body_ops}
    assert {
        "POST /api/studies/{study_uid}/feedback",
        "POST /dicomweb/studies",
        "POST /dicomweb/studies/{study_uid}",
        "POST /api/admin/dead-letters/{job_id}/retry",
        "POST /login",
    } <= names
    for method, path, op in body_ops:
        assert "413" in op["responses"], f"{method} {path}"
        media = _documented_media(op, "413")
        limit = 4096 if path.startswith("/dicomweb/") else 1024
        setting = "DICOMWEB_MAX_REQUEST" if path.startswith("/dicomweb/") else "HTTP_MAX_BODY"
        assert f"XRAYGATE_{setting}_BYTES" in op["responses"]["413"]["description"]
        got = client.request(method, _concrete(path), content=b"x" * (limit + 1))
        assert got.status_code == 413, f"{method} {path}: {got.status_code}"
        assert got.headers["content-type"].startswith(media), f"{method} {path}"
        schema = op["responses"]["413"]["content"][media]["schema"]["$ref"].rsplit("/", 1)[1]
        body = got.json()
        assert set(spec["components"]["schemas"][schema]["required"]) <= set(body), body
        assert str(limit) in json.dumps(body)
    # the limit is the gateway's, under it the route runs: the same feedback route says 401
    under = client.post("/api/studies/1/feedback", content=b"x" * 1024)
    assert under.status_code == 401


def test_every_operation_that_needs_a_caller_documents_how_it_refuses(gw: Gateway) -> None:
    """Each operation is called without a credential and with a token that has no role: the
    refusals it really gives are the ones its OpenAPI entry lists, with the same body type
    (401 on the APIs, a redirect to the login page on the pages; 403)."""
    spec = gw.client.get("/api/openapi.json", headers=gw.headers("clinician")).json()
    needs_caller = 0
    for method, path, op in _operations(spec):
        url = _concrete(path)
        anonymous = gw.client.request(method, url, headers={"Accept": "application/json"})
        to_login = anonymous.status_code == 303 and anonymous.headers["location"].startswith(
            "/login?next="
        )
        refused = anonymous.status_code == 401 or to_login
        responses = op["responses"]
        documented = "401" in responses or (
            "303" in responses and "Location" in responses["303"]["headers"]
        )
        # the sign-in callback refuses a failed sign-in (to the login page), not a missing caller
        assert refused == documented or path in SIGN_IN_FLOW, f"{method} {path}"
        if anonymous.status_code == 401:
            media = _documented_media(op, "401")
            assert anonymous.headers["content-type"].startswith(media), f"{method} {path}"
        roleless = gw.client.request(method, url, headers=gw.headers("nobody"))
        if refused or roleless.status_code == 403:
            assert "403" in responses, f"{method} {path}"
        if roleless.status_code == 403:
            media = _documented_media(op, "403")
            assert roleless.headers["content-type"].startswith(media), f"{method} {path}"
        needs_caller += refused
    assert needs_caller > 40
