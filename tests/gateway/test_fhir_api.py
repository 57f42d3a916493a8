"""The FHIR API over real HTTP (uvicorn on loopback), driven by the fhirpy client library as an
EHR would use it; every listed search parameter is exercised; bundles validate against R4."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound
from fhirpy.base.searchset import Raw

from tests.fhir.conftest import make_env
from tests.fhir.r4schema import r4_errors
from tests.results_factory import (
    Made,
    add_finding,
    enqueue_emit,
    make_result,
    rescore,
    run_until,
)
from xraygate.core.config import Settings
from xraygate.gateway.auth import Principal, Role
from xraygate.gateway.deps import current_principal
from xraygate.gateway.fhir_api import router

pytestmark = pytest.mark.integration
BASE_SYS = "https://xraygate.example.org/fhir"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    base: str
    client: SyncFHIRClient
    made: dict[str, Made]
    settings: Settings

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(f"{self.base}/{path}", timeout=10, **kw)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from xraygate.core import db
    from xraygate.core.config import get_settings

    tmp = tmp_path_factory.mktemp("fhirapi")
    settings = Settings(data_dir=tmp, database_url=f"sqlite:///{tmp / 'x.db'}", min_free_bytes=0)
    db.upgrade(settings.resolved_database_url)
    env = make_env(settings)
    engine = env.queue.engine
    made = {
        "a1": make_result(
            engine,
            patient_id="A1",
            accession="ACC-A1",
            score=0.3,
            category="low",
            study_date="20240510",
        ),
        "a2": make_result(
            engine,
            patient_id="A1",
            accession="ACC-A2",
            score=0.92,
            category="high",
            study_date="20240514",
        ),
        "a3": make_result(
            engine,
            patient_id="A1",
            accession="ACC-A3",
            score=0.7,
            category="indeterminate",
            study_date="20240601",
        ),
        "b1": make_result(
            engine,
            patient_id="B1",
            issuer="1.2.3.4",
            accession="ACC-B1",
            score=0.85,
            category="high",
            study_date="20231231",
            model="cxr-demo:2.0.0",
        ),
    }
    for m in made.values():
        enqueue_emit(engine, env.queue, "emit-fhir", m)
    run_until(env.queue, env.handlers, env.all_final)
    finding = add_finding(engine, made["a1"], "reject")  # final
    enqueue_emit(engine, env.queue, "emit-fhir", made["a1"], feedback_id=finding)
    run_until(env.queue, env.handlers, env.all_final)
    rescore(engine, made["a1"].result_id, score=0.35, category="low")  # amended
    enqueue_emit(engine, env.queue, "emit-fhir", made["a1"])
    run_until(env.queue, env.handlers, env.all_final)

    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[get_settings] = lambda: settings
    # an EHR without SMART scopes (the scope table is tests/gateway/test_security_scopes.py)
    ehr = Principal("ehr-system", frozenset({Role.EHR}), "api-key")
    app.dependency_overrides[current_principal] = lambda: ehr
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}/fhir"
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield Served(base, SyncFHIRClient(base), made, settings)
    server.should_exit = True
    thread.join(timeout=10)


def ids(resources: list[Any]) -> set[str]:
    return {r["id"] for r in resources}


def report_for(served: Served, key: str) -> dict[str, Any]:
    uid = served.made[key].study_uid
    [r] = (
        served.client.resources("DiagnosticReport")
        .search(identifier=f"{BASE_SYS}/report|{uid}:cxr-demo")
        .fetch()
    )
    return dict(r.serialize())


def patient_id(served: Served, mrn: str) -> str:
    [p] = served.client.resources("Patient").search(identifier=mrn).fetch()
    return str(p["id"])


# --- the EHR's searches ------------------------------------------------------------------------


def test_reports_by_patient_category_date_with_results(served: Served) -> None:
    pid = patient_id(served, "A1")
    found = (
        served.client.resources("DiagnosticReport")
        .search(patient=pid, category="RAD", date__ge="2024-05-01")
        .include("DiagnosticReport", "result")
        .sort("-date")
        .fetch_raw()
    )
    raw = served.get(
        "DiagnosticReport",
        params={
            "patient": pid,
            "category": "RAD",
            "date": "ge2024-05-01",
            "_include": "DiagnosticReport:result",
            "_sort": "-date",
        },
    ).json()
    assert r4_errors(raw) == [] and raw["total"] == 3 and len(raw["entry"]) == 6
    matches = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "match"]
    includes = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "include"]
    assert len(matches) == 3 and found["total"] == 3
    dates = [m["effectiveDateTime"] for m in matches]
    assert dates == sorted(dates, reverse=True)
    assert {i["resourceType"] for i in includes} == {"Observation"} and len(includes) == 3
    assert {m["result"][0]["reference"] for m in matches} == {
        f"Observation/{i['id']}" for i in includes
    }


def test_paging_follows_next_links(served: Served) -> None:
    pid = patient_id(served, "A1")
    search = served.client.resources("DiagnosticReport").search(patient=pid).limit(1)
    first = search.fetch_raw()
    assert first["total"] == 3 and {x["relation"] for x in first["link"]} >= {"self", "next"}
    assert len(search.fetch_all()) == 3
    assert search.count() == 3


def test_amended_report_and_history(served: Served) -> None:
    report = report_for(served, "a1")
    assert report["status"] == "amended" and report["meta"]["versionId"] == "3"
    hist = served.get(f"DiagnosticReport/{report['id']}/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["3", "2", "1"]
    assert [e["resource"]["status"] for e in hist["entry"]] == ["amended", "final", "preliminary"]
    assert r4_errors(hist) == []
    v1 = served.get(f"DiagnosticReport/{report['id']}/_history/1")
    assert v1.status_code == 200 and v1.json()["status"] == "preliminary"
    assert v1.headers["etag"] == 'W/"1"'
    amended = served.client.resources("DiagnosticReport").search(status="amended").fetch()
    assert ids(amended) == {report["id"]}


def test_read_etag_and_304(served: Served) -> None:
    report = report_for(served, "a2")
    r = served.get(f"DiagnosticReport/{report['id']}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    assert r.headers["etag"] == 'W/"1"' and "last-modified" in r.headers
    again = served.get(f"DiagnosticReport/{report['id']}", headers={"If-None-Match": 'W/"1"'})
    assert again.status_code == 304 and again.content == b""
    stale = served.get(f"DiagnosticReport/{report['id']}", headers={"If-None-Match": 'W/"0"'})
    assert stale.status_code == 200
    fetched = served.client.reference("DiagnosticReport", report["id"]).to_resource()
    assert fetched["id"] == report["id"]


def test_errors_are_operation_outcomes(served: Served) -> None:
    cases = [
        ("DiagnosticReport/does-not-exist", 404, "not-found"),
        ("Banana/1", 404, "not-supported"),
        ("DiagnosticReport/bad%20id", 400, "invalid"),
        ("Patient/x/_history/99999999999999999999999", 400, "invalid"),
        ("DiagnosticReport?frobnicate=1", 400, "not-supported"),
        ("DiagnosticReport?date=2024-99-99", 400, "invalid"),
        ("DiagnosticReport?date=ap2024", 400, "not-supported"),
        ("DiagnosticReport?_include=Observation:device", 400, "not-supported"),
        ("DiagnosticReport?_sort=conclusion", 400, "not-supported"),
    ]
    for path, status, code in cases:
        r = served.get(path)
        assert r.status_code == status, path
        body = r.json()
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == code
        assert r4_errors(body) == []
    lenient = served.get("DiagnosticReport?frobnicate=1", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200 and lenient.json()["total"] == 4
    with pytest.raises(ResourceNotFound):
        served.client.reference("DiagnosticReport", "nope").to_resource()
    with pytest.raises(OperationOutcome):
        served.client.resources("DiagnosticReport").search(frobnicate="1").fetch()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("date=2024-05", {"a1", "a2"}),
        ("date=eq2024-05-14", {"a2"}),
        ("date=ne2024-05-14", {"a1", "a3", "b1"}),
        ("date=gt2024-05-14", {"a3"}),
        ("date=sa2024-05-14", {"a3"}),
        ("date=lt2024", {"b1"}),
        ("date=eb2024-05-10", {"b1"}),
        ("date=le2024-05-14", {"a1", "a2", "b1"}),
        ("date=ge2024-05-14T08:31:02%2B00:00", {"a2", "a3"}),
        ("date=gt2024-05-14T08:31:02Z", {"a3"}),
        ("date=ge2024-05-01&date=lt2024-06", {"a1", "a2"}),
    ],
)
def test_date_prefixes(served: Served, query: str, expected: set[str]) -> None:
    body = served.get(f"DiagnosticReport?{query}&_count=50").json()
    want = {report_for(served, k)["id"] for k in expected}
    assert ids([e["resource"] for e in body.get("entry", [])]) == want, query


# --- metadata lists exactly what works -----------------------------------------------------------


def _probes(served: Served) -> dict[tuple[str, str], tuple[str, str]]:
    """(type, param) -> (value, id of a resource it must find); the B1 data must not match."""
    a2 = report_for(served, "a2")
    obs_id = a2["result"][0]["reference"].split("/")[1]
    study_id = a2["imagingStudy"][0]["reference"].split("/")[1]
    pid = a2["subject"]["reference"].split("/")[1]
    [obs] = served.client.resources("Observation").search(_id=obs_id).fetch()
    device_id = obs["device"]["reference"].split("/")[1]
    study_uid = served.made["a2"].study_uid
    dr, ob, im = a2["id"], obs_id, study_id
    prov = served.client.resources("Provenance").fetch()[0]["id"]
    [a2_prov] = [p["id"] for p in served.client.resources("Provenance").search(target=dr).fetch()]
    return {
        ("DiagnosticReport", "_id"): (dr, dr),
        ("DiagnosticReport", "_lastUpdated"): ("ge2000-01-01", dr),
        ("DiagnosticReport", "patient"): (f"Patient/{pid}", dr),
        ("DiagnosticReport", "subject"): (pid, dr),
        ("DiagnosticReport", "identifier"): ("ACC-A2", dr),
        ("DiagnosticReport", "status"): ("preliminary", dr),
        ("DiagnosticReport", "category"): ("http://terminology.hl7.org/CodeSystem/v2-0074|RAD", dr),
        ("DiagnosticReport", "code"): ("http://loinc.org|18748-4", dr),
        ("DiagnosticReport", "date"): ("2024-05-14", dr),
        ("DiagnosticReport", "based-on"): (f"{BASE_SYS}/accession|ACC-A2", dr),
        ("DiagnosticReport", "result"): (f"Observation/{ob}", dr),
        ("Observation", "_id"): (ob, ob),
        ("Observation", "_lastUpdated"): ("ge2000", ob),
        ("Observation", "patient"): (pid, ob),
        ("Observation", "subject"): (f"Patient/{pid}", ob),
        ("Observation", "status"): ("preliminary", ob),
        ("Observation", "category"): ("imaging", ob),
        ("Observation", "code"): (f"{BASE_SYS}/CodeSystem/ai-findings|pneumonia-risk", ob),
        ("Observation", "date"): ("ge2024-05-14", ob),
        ("Observation", "derived-from"): (f"ImagingStudy/{im}", ob),
        ("Observation", "device"): (f"Device/{device_id}", ob),
        ("ImagingStudy", "_id"): (im, im),
        ("ImagingStudy", "_lastUpdated"): ("ge2000", im),
        ("ImagingStudy", "patient"): (pid, im),
        ("ImagingStudy", "subject"): (pid, im),
        ("ImagingStudy", "identifier"): (f"urn:dicom:uid|urn:oid:{study_uid}", im),
        ("ImagingStudy", "status"): ("available", im),
        ("ImagingStudy", "started"): ("2024-05-14", im),
        ("ImagingStudy", "modality"): ("CR", im),
        ("Patient", "_id"): (pid, pid),
        ("Patient", "_lastUpdated"): ("ge2000", pid),
        ("Patient", "identifier"): (f"{BASE_SYS}/patient-id/HOSP|A1", pid),
        ("Device", "_id"): (device_id, device_id),
        ("Device", "_lastUpdated"): ("ge2000", device_id),
        ("Device", "identifier"): (f"{BASE_SYS}/model|cxr-demo:1.0.0", device_id),
        ("Device", "status"): ("active", device_id),
        ("Provenance", "_id"): (prov, prov),
        ("Provenance", "_lastUpdated"): ("ge2000", prov),
        ("Provenance", "target"): (f"DiagnosticReport/{dr}", a2_prov),
        ("CodeSystem", "url"): (f"{BASE_SYS}/CodeSystem/ai-findings", "ai-findings"),
    }


def test_metadata_lists_exactly_what_works(served: Served) -> None:
    cap = served.get("metadata").json()
    assert r4_errors(cap) == []
    assert cap["fhirVersion"] == "4.0.1" and "ai-findings" in cap["rest"][0]["documentation"]
    listed = {
        (res["type"], p["name"]): p["type"]
        for res in cap["rest"][0]["resource"]
        for p in res["searchParam"]
    }
    probes = _probes(served)
    assert set(listed) == set(probes)
    for (rtype, name), (value, want) in probes.items():
        # our basedOn references are logical (the accession): searched with :identifier
        key = "based-on:identifier" if name == "based-on" else name
        body = served.get(rtype, params={key: value, "_count": "100"}).json()
        assert body["resourceType"] == "Bundle", (rtype, name, body)
        found = ids([e["resource"] for e in body.get("entry", [])])
        if want:
            assert want in found, (rtype, name, value)
        # and the parameter is applied: a value that matches nothing finds nothing
        miss = "lt1900-01-01" if listed[(rtype, name)] == "date" else "no-such-value"
        empty = served.get(rtype, params={key: miss})
        assert empty.status_code == 200 and empty.json()["total"] == 0, (rtype, name)
    for res in cap["rest"][0]["resource"]:
        for include in res.get("searchInclude", []):
            assert served.get(res["type"], params={"_include": include}).status_code == 200


def test_based_on_accession_chain_and_or(served: Served) -> None:
    dr = report_for(served, "a2")["id"]
    found = (
        served.client.resources("DiagnosticReport")
        .search(**{"based-on:identifier": f"{BASE_SYS}/accession|ACC-A2"})
        .fetch()
    )
    assert ids(found) == {dr}
    chained = (
        served.client.resources("DiagnosticReport")
        .search(Raw(**{"patient.identifier": "urn:oid:1.2.3.4|B1"}))
        .fetch()
    )
    assert ids(chained) == {report_for(served, "b1")["id"]}
    either = served.get("DiagnosticReport?identifier=ACC-A2,ACC-B1").json()
    assert either["total"] == 2


# --- discovery: metadata, CodeSystem, _revinclude, JSON only (issue 10) ----------------------


def test_revinclude_provenance_and_provenance_by_target(served: Served) -> None:
    report = report_for(served, "a1")  # three versions, three Provenances
    bundle = served.get(
        "DiagnosticReport", params={"_id": report["id"], "_revinclude": "Provenance:target"}
    ).json()
    assert r4_errors(bundle) == []
    modes = [(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]]
    assert modes[0] == ("DiagnosticReport", "match")
    provs = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert len(provs) == 3 and {p["resourceType"] for p in provs} == {"Provenance"}
    assert {p["target"][0]["reference"] for p in provs} == {
        f"DiagnosticReport/{report['id']}/_history/{v}" for v in (1, 2, 3)
    }
    by_target = served.get("Provenance", params={"target": f"DiagnosticReport/{report['id']}"})
    assert by_target.json()["total"] == 3
    versioned = served.get(
        "Provenance", params={"target": f"DiagnosticReport/{report['id']}/_history/2"}
    )
    assert versioned.json()["total"] == 3, "a target matches whatever version is named"
    other = report_for(served, "a2")
    only = served.get("Provenance", params={"target": f"DiagnosticReport/{other['id']}"}).json()
    assert only["total"] == 1
    bad = served.get("DiagnosticReport", params={"_revinclude": "Device:patient"})
    assert bad.status_code == 400 and bad.json()["issue"][0]["code"] == "not-supported"


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"_format": "xml"}, {}),
        ({"_format": "application/fhir+xml"}, {}),
        ({}, {"Accept": "application/fhir+xml"}),
    ],
)
def test_xml_is_not_acceptable(
    served: Served, params: dict[str, str], headers: dict[str, str]
) -> None:
    for path in ("metadata", "DiagnosticReport", "CodeSystem/ai-findings"):
        r = served.get(path, params=params, headers=headers)
        assert r.status_code == 406, path
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome" and r4_errors(outcome) == []
    ok = served.get("DiagnosticReport", params={"_format": "json"})
    assert ok.status_code == 200
    assert served.get("metadata", headers={"Accept": "application/fhir+json"}).status_code == 200


def test_code_system_is_served(served: Served) -> None:
    cs = served.get("CodeSystem/ai-findings").json()
    assert r4_errors(cs) == []
    assert cs["url"] == f"{BASE_SYS}/CodeSystem/ai-findings"
    codes = {c["code"] for c in cs["concept"]}
    obs = served.client.resources("Observation").search(_count=50).fetch()
    used = {
        c["code"]
        for o in obs
        for cc in [o["code"], *(x["code"] for x in o["component"])]
        for c in cc["coding"]
        if c["system"] == cs["url"]
    }
    assert used and used <= codes
    found = served.get("CodeSystem", params={"url": cs["url"]}).json()
    assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == "ai-findings"
    assert served.get("CodeSystem", params={"url": "urn:x"}).json()["total"] == 0
    assert served.get("CodeSystem/other").status_code == 404
    meta = served.get("metadata").json()
    types = {r["type"]: r for r in meta["rest"][0]["resource"]}
    assert "CodeSystem" in types and types["DiagnosticReport"]["searchRevInclude"] == [
        "Provenance:target"
    ]
