"""API docs a person can open (issue 12): Swagger UI at /docs and ReDoc at /redoc for an
authenticated caller, assets served from this process (no CDN), and every route's OpenAPI entry
lists the refusals it really answers, with the error model."""

from __future__ import annotations

import re
from pathlib import Path

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
