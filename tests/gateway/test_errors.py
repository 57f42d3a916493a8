"""Refusals answer in the body of the router they concern (JSON, OperationOutcome or a page), also
for paths no route serves; the AUDITED flag marks exactly the routes holding patient data."""

from __future__ import annotations

from fastapi.routing import APIRoute, iter_route_contexts

from tests.gateway.conftest import Gateway
from xraygate.gateway.deps import is_audited


def test_unknown_paths_answer_like_their_neighbours(gw: Gateway) -> None:
    fhir = gw.client.get("/fhir/Patient/1/_history/1/x", headers=gw.headers("ehr"))
    assert fhir.status_code == 404
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    assert fhir.json()["issue"][0]["code"] == "not-found"
    api = gw.client.get("/api/nope", headers=gw.headers("clinician"))
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    asset = gw.client.get("/static/nope.css")
    assert asset.status_code == 404 and asset.json() == {"detail": "Not Found"}
    page = gw.client.get("/nope")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


def test_wrong_method_keeps_the_router_body_and_allow(gw: Gateway) -> None:
    fhir = gw.client.post("/fhir/DiagnosticReport", headers=gw.headers("ehr"))
    assert fhir.status_code == 405 and fhir.headers["allow"] == "GET"
    assert fhir.json()["issue"][0]["code"] == "processing"
    page = gw.client.post("/worklist", headers=gw.headers("clinician"))
    assert page.status_code == 405 and page.headers["allow"] == "GET"
    assert page.headers["content-type"].startswith("text/html")


def test_pages_send_anonymous_callers_to_login_and_refuse_wrong_roles(gw: Gateway) -> None:
    anonymous = gw.client.get("/admin")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=/admin"
    refused = gw.client.get("/admin", headers=gw.headers("clinician"))
    assert refused.status_code == 403 and "requires role admin" in refused.text


_SERIES = "/dicomweb/studies/{study_uid}/series/{series_uid}"
DICOMWEB = {
    ("GET", "/dicomweb/studies"),
    ("GET", "/dicomweb/studies/{study_uid}"),
    ("GET", "/dicomweb/studies/{study_uid}/series"),
    ("GET", "/dicomweb/studies/{study_uid}/instances"),
    ("GET", _SERIES),
    ("GET", f"{_SERIES}/instances"),
    ("GET", f"{_SERIES}/instances/{{sop_uid}}"),
    ("GET", f"{_SERIES}/instances/{{sop_uid}}/metadata"),
    ("GET", f"{_SERIES}/instances/{{sop_uid}}/rendered"),
    ("GET", f"{_SERIES}/instances/{{sop_uid}}/frames/{{frame}}/rendered"),
    ("POST", "/dicomweb/studies"),
    ("POST", "/dicomweb/studies/{study_uid}"),
}


def test_audited_routes_are_those_holding_patient_data(gw: Gateway) -> None:
    audited = set()
    for context in iter_route_contexts(gw.app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and is_audited(route):
            audited.update((method, route.path) for method in route.methods)
    assert audited == {
        ("GET", "/worklist"),
        ("GET", "/studies/{study_uid}"),
        ("GET", "/api/worklist"),
        ("GET", "/api/worklist/new-high-risk"),  # counts and links to studies: audited too
        ("GET", "/api/studies/{study_uid}"),
        ("GET", "/api/studies/{study_uid}/instances/{sop_uid}/rendered"),
        ("GET", "/api/studies/{study_uid}/instances/{sop_uid}/saliency"),
        ("GET", "/api/studies/{study_uid}/feedback"),
        ("POST", "/api/studies/{study_uid}/feedback"),
        ("GET", "/api/admin/audit"),
        ("GET", "/api/admin/audit/{event_id}"),
        ("GET", "/fhir/{resource_type}"),
        ("GET", "/fhir/{resource_type}/{resource_id}"),
        ("GET", "/fhir/{resource_type}/{resource_id}/_history"),
        ("GET", "/fhir/{resource_type}/{resource_id}/_history/{version_id}"),
        *DICOMWEB,
    }
