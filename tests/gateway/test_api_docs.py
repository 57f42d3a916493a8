"""API docs a person can open (issue 12): Swagger UI at /docs and ReDoc at /redoc for an
authenticated caller, assets served from this process (no CDN), and every route's OpenAPI entry
lists the refusals it really answers, with the error model."""

from __future__ import annotations

import re

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
            if path.startswith(("/api/", "/fhir/")) and not path.endswith("/metadata"):
                assert {"401", "403"} <= set(op["responses"]), f"{method} {path}"
                authed += 1
    assert authed > 20
    # a route says only what it answers: the liveness probe needs no caller
    assert "401" not in spec["paths"]["/healthz"]["get"]["responses"]
