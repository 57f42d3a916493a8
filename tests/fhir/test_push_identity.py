"""FHIR push by identity against a strict R4 push target (tests/fhir/strict_server.py): the EHR's
patient is referenced by identifier and never written; our resources are conditional updates on
business identifiers, so re-pushes are no-ops and nothing is duplicated."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fhir.conftest import FhirEnv, make_env
from tests.fhir.strict_server import StrictFhirServer
from tests.results_factory import Made, add_finding, enqueue_emit, make_result, rescore, run_until
from xraygate.core.config import Settings

pytestmark = pytest.mark.integration

EHR_SYSTEM = "urn:oid:1.2.840.99999.1.1"
EHR_PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "ehr-patient-1",
    "identifier": [{"system": EHR_SYSTEM, "value": "MRN123"}],
    "name": [{"family": "DOE", "given": ["JANE"]}],
}
OURS = ["ImagingStudy", "Device", "Observation", "DiagnosticReport", "Provenance"]


def push_env(settings: Settings, server: StrictFhirServer, **extra: object) -> FhirEnv:
    return make_env(
        settings,
        fhir_push_url=server.url,
        fhir_patient_id_systems={"HOSP": EHR_SYSTEM},
        **extra,
    )


def emit(env: FhirEnv, made: Made, feedback_id: int | None = None) -> None:
    enqueue_emit(env.queue.engine, env.queue, "emit-fhir", made, feedback_id=feedback_id)
    run_until(env.queue, env.handlers, env.all_final)


def counts(server: StrictFhirServer) -> dict[str, list[int]]:
    """Per resource type, the number of versions of each resource."""
    return {
        rtype: sorted(len(v) for v in server.versions(rtype))
        for rtype in ["Patient", *OURS]
        if server.versions(rtype)
    }


def the_report(server: StrictFhirServer, made: Made) -> dict[str, Any]:
    [report] = [
        r
        for r in server.current("DiagnosticReport")
        if r["identifier"][0]["value"].startswith(made.study_uid)
    ]
    return report


def test_pushes_reference_the_ehr_patient_and_repushes_are_no_ops(settings: Settings) -> None:
    with StrictFhirServer(patients=[EHR_PATIENT]) as server:
        env = push_env(settings, server)
        engine = env.queue.engine
        # 1. a first study
        first = make_result(engine, score=0.87, category="high")
        emit(env, first)
        assert [status for status, _ in server.answers] == [200]
        assert counts(server) == {
            "Patient": [1],
            "ImagingStudy": [1],
            "Device": [1],
            "Observation": [1],
            "DiagnosticReport": [1],
            "Provenance": [1],
        }
        report = the_report(server, first)
        assert report["subject"] == {"reference": "Patient/ehr-patient-1"}
        [obs] = server.current("Observation")
        [device] = server.current("Device")
        [study] = server.current("ImagingStudy")
        assert report["result"] == [{"reference": f"Observation/{obs['id']}"}]
        assert obs["device"] == {"reference": f"Device/{device['id']}"}
        assert obs["subject"] == {"reference": "Patient/ehr-patient-1"}
        assert study["subject"] == {"reference": "Patient/ehr-patient-1"}
        [prov] = server.current("Provenance")
        assert prov["target"][0] == {"reference": f"DiagnosticReport/{report['id']}"}
        assert report["status"] == "preliminary"
        assert obs["interpretation"][0]["coding"][0]["code"] == "H"

        # 2. the same study re-scored (still preliminary: no clinician finding yet)
        rescore(engine, first.result_id, score=0.3, category="low")
        emit(env, first)
        assert counts(server) == {
            "Patient": [1],
            "ImagingStudy": [1],
            "Device": [1],
            "Observation": [2],
            "DiagnosticReport": [2],
            "Provenance": [1, 1],
        }
        report = the_report(server, first)
        assert report["status"] == "preliminary"
        [obs] = server.current("Observation")
        assert obs["interpretation"][0]["coding"][0]["code"] == "N", "low is normal, never L"

        # 3. a clinician's finding: final
        finding = add_finding(engine, first, "reject")
        emit(env, first, feedback_id=finding)
        assert the_report(server, first)["status"] == "final"

        # 4. a second study of the same patient, 5. a PA + lateral study
        second = make_result(engine, score=0.2, category="low", accession="ACC-2")
        emit(env, second)
        pa_lateral = make_result(
            engine, score=0.91, category="high", accession="ACC-3", n_instances=2
        )
        emit(env, pa_lateral)
        assert counts(server)["Patient"] == [1]
        assert counts(server)["Device"] == [1], "one model version: one Device"
        assert len(server.current("DiagnosticReport")) == 3
        assert len(server.current("ImagingStudy")) == 3
        assert {r["subject"]["reference"] for r in server.current("DiagnosticReport")} == {
            "Patient/ehr-patient-1"
        }
        [two] = [
            s
            for s in server.current("ImagingStudy")
            if s["identifier"][0]["value"] == f"urn:oid:{pa_lateral.study_uid}"
        ]
        assert two["numberOfInstances"] == 2
        assert all(status == 200 for status, _ in server.answers)
        assert not [w for w in server.writes if w.resource_type == "Patient"]

        # 6. each study's latest Bundle pushed again (a replay): nothing changes
        before = json.dumps(server.store, sort_keys=True)
        n_writes = len(server.writes)
        rows = env.outbox()
        assert len(rows) == 5 and all(row.state == "delivered" for row in rows)
        latest = {row.study_uid: row.message for row in rows}  # ordered by id: last wins
        assert len(latest) == 3
        for body in latest.values():
            r = httpx.post(
                server.url, content=body, headers={"Content-Type": "application/fhir+json"}
            )
            assert r.status_code == 200, r.text
        assert json.dumps(server.store, sort_keys=True) == before
        again = server.writes[n_writes:]
        assert again and {w.outcome for w in again} <= {"no-op", "matched"}


def test_bundle_shape(settings: Settings) -> None:
    with StrictFhirServer(patients=[EHR_PATIENT]) as server:
        env = push_env(settings, server)
        emit(env, make_result(env.queue.engine, patient_id="MRN123\\OLD-7"))
        [row] = env.outbox()
    bundle = json.loads(row.message)
    requests = [(e["resource"]["resourceType"], e["request"]) for e in bundle["entry"]]
    assert [t for t, _ in requests] == OURS, "no Patient in the Bundle"
    methods = {t: (r["method"], r["url"].split("?")[0]) for t, r in requests}
    assert methods == {
        "ImagingStudy": ("PUT", "ImagingStudy"),
        "Device": ("PUT", "Device"),
        "Observation": ("PUT", "Observation"),
        "DiagnosticReport": ("PUT", "DiagnosticReport"),
        "Provenance": ("POST", "Provenance"),
    }
    assert all("?identifier=" in r["url"] for t, r in requests if t != "Provenance")
    assert requests[-1][1]["ifNoneExist"].startswith("_tag=")
    report = bundle["entry"][3]["resource"]
    assert "id" not in report and "meta" not in report
    assert report["subject"]["reference"] == f"Patient?identifier={EHR_SYSTEM}%7CMRN123"
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in bundle["entry"])


def test_unknown_patient_is_refused_and_dead_lettered(sqlite_settings: Settings) -> None:
    with StrictFhirServer(patients=[EHR_PATIENT]) as server:
        env = push_env(sqlite_settings, server)
        emit(env, make_result(env.queue.engine, patient_id="NOT-AT-THE-EHR"))
    [row] = env.outbox()
    assert row.state == "dead" and "conditional reference" in (row.last_error or "")
    assert server.store.keys() == {"Patient"}, "the failed transaction wrote nothing"


def test_create_if_missing_creates_the_patient_once(settings: Settings) -> None:
    with StrictFhirServer(allow_patient_create=True) as server:
        env = push_env(settings, server, fhir_push_patient_mode="create-if-missing")
        emit(env, make_result(env.queue.engine))
        emit(env, make_result(env.queue.engine, accession="ACC-2"))
    assert all(status == 200 for status, _ in server.answers)
    [patient] = server.current("Patient")
    assert counts(server)["Patient"] == [1]
    assert patient["identifier"][0]["system"] == EHR_SYSTEM
    assert [w.outcome for w in server.writes if w.resource_type == "Patient"] == [
        "created",
        "matched",
    ]
    refs = {r["subject"]["reference"] for r in server.current("DiagnosticReport")}
    assert refs == {f"Patient/{patient['id']}"}


def test_patient_writes_are_refused_by_default_server(sqlite_settings: Settings) -> None:
    """The strict target itself: a Bundle writing Patient gets 403 (it can fail)."""
    with StrictFhirServer(patients=[EHR_PATIENT]) as server:
        env = push_env(sqlite_settings, server, fhir_push_patient_mode="create-if-missing")
        emit(env, make_result(env.queue.engine))
    [row] = env.outbox()
    assert row.state == "dead" and "Patient writes" in (row.last_error or "")


def test_strict_target_refuses_invalid_and_ambiguous_bundles() -> None:
    """The target can fail: the old push (PUT Patient with ``"status": null``) is refused, and
    so is a conditional update matching two resources."""
    twin = {**EHR_PATIENT, "id": "ehr-patient-2"}
    with StrictFhirServer(patients=[EHR_PATIENT, twin]) as server:
        old = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {"resourceType": "Patient", "id": "x", "status": None},
                    "request": {"method": "PUT", "url": "Patient/x"},
                }
            ],
        }
        headers = {"Content-Type": "application/fhir+json"}
        r = httpx.post(server.url, content=json.dumps(old), headers=headers)
        assert r.status_code == 400 and "schema" in r.text
        ambiguous = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:5b0b1d3e-2f7a-4c1e-9a55-0d6f6f0b7a01",
                    "resource": {
                        "resourceType": "Device",
                        "status": "active",
                        "patient": {"reference": f"Patient?identifier={EHR_SYSTEM}|MRN123"},
                    },
                    "request": {"method": "POST", "url": "Device"},
                }
            ],
        }
        r = httpx.post(server.url, content=json.dumps(ambiguous), headers=headers)
        assert r.status_code == 412 and "2" in r.json()["issue"][0]["diagnostics"]
        assert server.current("Device") == []
