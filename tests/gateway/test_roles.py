"""Every route of the app has a role decision, and each role can do exactly what it should.

ROUTES lists every (method, route template) of ``create_app``: a route added without an entry
here fails ``test_every_route_has_a_role_decision``.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount

from tests.gateway.conftest import Gateway

PUBLIC = "public"
ANY = "any-authenticated"
ADMIN, CLINICIAN, EHR, MODALITY = "admin", "clinician", "ehr", "modality"

_SERIES = "/dicomweb/studies/{study_uid}/series/{series_uid}"

# (method, route) -> who may call it. FHIR: ehr (scoped) or admin.
ROUTES: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,  # XRAYGATE_METRICS_AUTH=true makes it admin: tested below
    ("GET", "/"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    ("GET", "/login/oidc"): PUBLIC,  # single sign-on: tests/gateway/test_oidc_login.py
    ("GET", "/login/oidc/callback"): PUBLIC,
    ("GET", "/worklist"): frozenset({CLINICIAN}),
    ("GET", "/studies/{study_uid}"): frozenset({CLINICIAN}),
    ("GET", "/admin"): frozenset({ADMIN}),
    ("GET", "/api/worklist"): frozenset({CLINICIAN}),
    ("GET", "/api/studies/{study_uid}"): frozenset({CLINICIAN}),
    ("GET", "/api/studies/{study_uid}/instances/{sop_uid}/rendered"): frozenset({CLINICIAN}),
    ("GET", "/api/studies/{study_uid}/instances/{sop_uid}/saliency"): frozenset({CLINICIAN}),
    ("GET", "/api/studies/{study_uid}/feedback"): frozenset({CLINICIAN}),
    ("POST", "/api/studies/{study_uid}/feedback"): frozenset({CLINICIAN}),
    ("GET", "/api/admin/models"): frozenset({ADMIN}),
    ("POST", "/api/admin/models/{name}/{version}/activate"): frozenset({ADMIN}),
    ("POST", "/api/admin/models/rollback"): frozenset({ADMIN}),
    ("GET", "/api/admin/dead-letters"): frozenset({ADMIN}),
    ("POST", "/api/admin/dead-letters/{job_id}/retry"): frozenset({ADMIN}),
    ("GET", "/api/admin/settings"): frozenset({ADMIN}),
    ("GET", "/api/admin/audit"): frozenset({ADMIN}),
    ("GET", "/api/admin/audit/{event_id}"): frozenset({ADMIN}),
    ("GET", "/api/admin/deid/held"): frozenset({ADMIN}),
    ("GET", "/api/admin/deid/held/{export_id}/thumbnail.png"): frozenset({ADMIN}),
    ("GET", "/admin/quality"): frozenset({ADMIN}),
    ("GET", "/api/admin/models/report"): frozenset({ADMIN}),
    ("GET", "/api/admin/models/report/fhir"): frozenset({ADMIN}),
    ("GET", "/api/admin/models/promotion"): frozenset({ADMIN}),
    ("POST", "/api/admin/models/promote"): frozenset({ADMIN}),
    ("GET", "/fhir/metadata"): PUBLIC,  # SMART clients read it before they have a token
    ("GET", "/fhir/CodeSystem"): PUBLIC,  # our local codes: no patient data
    ("GET", "/fhir/CodeSystem/{code_system_id}"): PUBLIC,
    ("GET", "/fhir/{resource_type}"): frozenset({EHR, ADMIN}),
    ("GET", "/fhir/{resource_type}/{resource_id}"): frozenset({EHR, ADMIN}),
    ("GET", "/fhir/{resource_type}/{resource_id}/_history"): frozenset({EHR, ADMIN}),
    ("GET", "/fhir/{resource_type}/{resource_id}/_history/{version_id}"): frozenset({EHR, ADMIN}),
    ("GET", "/dicomweb/studies"): frozenset({CLINICIAN, ADMIN}),
    ("GET", "/dicomweb/studies/{study_uid}"): frozenset({CLINICIAN, ADMIN}),
    ("GET", "/dicomweb/studies/{study_uid}/series"): frozenset({CLINICIAN, ADMIN}),
    ("GET", "/dicomweb/studies/{study_uid}/instances"): frozenset({CLINICIAN, ADMIN}),
    ("GET", "/dicomweb/studies/{study_uid}/series/{series_uid}"): frozenset({CLINICIAN, ADMIN}),
    ("GET", f"{_SERIES}/instances"): frozenset({CLINICIAN, ADMIN}),
    ("GET", f"{_SERIES}/instances/{{sop_uid}}"): frozenset({CLINICIAN, ADMIN}),
    ("GET", f"{_SERIES}/instances/{{sop_uid}}/metadata"): frozenset({CLINICIAN, ADMIN}),
    ("GET", f"{_SERIES}/instances/{{sop_uid}}/rendered"): frozenset({CLINICIAN, ADMIN}),
    ("GET", f"{_SERIES}/instances/{{sop_uid}}/frames/{{frame}}/rendered"): frozenset(
        {CLINICIAN, ADMIN}
    ),
    ("POST", "/dicomweb/studies"): frozenset({MODALITY}),
    ("POST", "/dicomweb/studies/{study_uid}"): frozenset({MODALITY}),
    ("GET", "/api/me"): ANY,
    ("GET", "/api/openapi.json"): ANY,
    ("GET", "/docs"): ANY,  # Swagger UI over /api/openapi.json
    ("GET", "/redoc"): ANY,  # ReDoc over /api/openapi.json
    ("GET", "/api/worklist/new-high-risk"): frozenset({CLINICIAN}),
}
PUBLIC_MOUNTS = {"/static", "/docs/assets"}  # page assets; Swagger UI and ReDoc files
CALLERS = [
    "anonymous",
    "nobody",
    "admin",
    "clinician",
    "ehr",
    "key:pacs-bridge",
    "key:ops-robot",
    "key:modality-box",
]
CALLER_ROLES = {
    "nobody": set(),
    "admin": {ADMIN},
    "clinician": {CLINICIAN},
    "ehr": {EHR},
    "key:pacs-bridge": {EHR},
    "key:ops-robot": {ADMIN},
    "key:modality-box": {MODALITY},
}
PAGES = {"/worklist", "/studies/{study_uid}", "/admin", "/admin/quality", "/docs", "/redoc"}


def _routes(gw: Gateway) -> set[tuple[str, str]]:
    found = set()
    for context in iter_route_contexts(gw.app.routes):
        route = context.route
        if isinstance(route, APIRoute):
            assert context.path is not None
            found.update((method, context.path) for method in route.methods)
        elif isinstance(route, Mount):
            assert route.path in PUBLIC_MOUNTS, f"mount {route.path} has no role decision"
        else:
            raise AssertionError(f"unexpected route {route!r}")
    return found


def test_every_route_has_a_role_decision(gw: Gateway) -> None:
    assert _routes(gw) == set(ROUTES), "add the route and who may call it to ROUTES"


def _url(gw: Gateway, path: str) -> str:
    values = {
        "study_uid": gw.high.study_uid,
        "sop_uid": gw.high.instance_uids[0],
        "name": "cxr-demo",
        "version": "1.0.0",
        "job_id": "999999",
        "event_id": "1",
        "export_id": "999999",
        "resource_type": "DiagnosticReport",
        "resource_id": "nope",
        "version_id": "1",
        "series_uid": "1.2.3",
        "frame": "1",
        "code_system_id": "ai-findings",
    }
    return path.format(**values)


def _call(gw: Gateway, method: str, path: str, who: str) -> Any:
    body: dict[str, Any] = {}
    if path.endswith("/feedback"):
        body = {"json": {"finding": "confirm", "by": who}}
    if path == "/login":  # public: anyone may log in with a valid credential
        body = {"data": {"credential": gw.tokens["clinician"]}}
    return gw.client.request(method, _url(gw, path), headers=gw.headers(who), **body)


@pytest.mark.parametrize("caller", CALLERS)
def test_each_caller_gets_exactly_its_routes(gw: Gateway, caller: str) -> None:
    wrong = []
    for (method, path), allowed in sorted(ROUTES.items()):
        response = _call(gw, method, path, caller)
        status = response.status_code
        login_redirect = status == 303 and response.headers["location"].startswith("/login")
        if allowed == PUBLIC:
            ok = status not in (401, 403) and (path == "/logout" or not login_redirect)
        elif caller == "anonymous":
            ok = login_redirect if path in PAGES else status == 401
        elif allowed == ANY:
            ok = status not in (401, 403)
        else:
            assert isinstance(allowed, frozenset)
            permitted = bool(CALLER_ROLES[caller] & allowed)
            ok = (status not in (401, 403) and not login_redirect) if permitted else status == 403
        if not ok:
            wrong.append(f"{caller} {method} {path} -> {status}")
    assert wrong == []


def test_anonymous_api_calls_get_401_with_bearer_challenge(gw: Gateway) -> None:
    response = gw.client.get("/api/worklist")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    fhir = gw.client.get("/fhir/DiagnosticReport")
    assert fhir.status_code == 401 and fhir.json()["resourceType"] == "OperationOutcome"


def test_smart_scopes_limit_the_fhir_types(gw: Gateway) -> None:
    headers = gw.headers("ehr-reports-only")
    assert gw.client.get("/fhir/DiagnosticReport", headers=headers).status_code == 200
    refused = gw.client.get("/fhir/Patient", headers=headers)
    assert refused.status_code == 403 and refused.json()["issue"][0]["code"] == "forbidden"
    assert gw.client.get("/api/worklist", headers=headers).status_code == 403
    me = gw.client.get("/api/me", headers=headers).json()
    assert me["roles"] == ["ehr"] and me["fhir_types"] == ["DiagnosticReport"]


def test_metrics_can_require_admin(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from tests.gateway.conftest import API_KEYS, gateway_settings, token
    from xraygate.gateway.app import create_app

    settings = gateway_settings(tmp_path, metrics_auth=True)
    client = TestClient(create_app(settings))
    assert client.get("/metrics").status_code == 401
    clinician = {"Authorization": f"Bearer {token(settings, 'clinician')}"}
    assert client.get("/metrics", headers=clinician).status_code == 403
    assert (
        client.get("/metrics", headers={"X-API-Key": API_KEYS["ops-robot"][1]}).status_code == 200
    )
    assert client.get("/healthz").status_code == 200


def test_ops_listener_serves_only_probes_and_metrics(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from tests.gateway.conftest import gateway_settings
    from xraygate.gateway.app import create_ops_app

    app = create_ops_app(gateway_settings(tmp_path))
    paths = {c.path for c in iter_route_contexts(app.routes)}
    assert paths == {"/healthz", "/readyz", "/metrics"}
    client = TestClient(app)
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")  # no model registered in this database yet
    assert ready.status_code == 503 and ready.json()["checks"]["model"].startswith("error")
    assert "xraygate_queue_depth" in client.get("/metrics").text
