"""Emitted resources validate with fhir.resources (R4B) and the official R4 JSON schema; the
store versions them; shadow results are skipped."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from tests.fhir.conftest import make_env
from tests.fhir.r4schema import r4_errors
from tests.results_factory import add_finding, enqueue_emit, make_result, rescore, run_until
from xraygate.core.config import Settings
from xraygate.core.errors import PermanentDelivery
from xraygate.fhir.validate import validate_resource

TYPES = ["Patient", "ImagingStudy", "Device", "Observation", "DiagnosticReport", "Provenance"]


def assert_valid(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    errors = r4_errors(resource)
    assert errors == [], (resource["resourceType"], errors)


@pytest.mark.parametrize(
    ("score", "category"),
    [(0.87, "high"), (0.3, "low"), (0.7, "indeterminate"), (None, "not-applicable")],
)
def test_every_emitted_resource_is_valid_r4(
    sqlite_settings: Settings, score: float | None, category: str
) -> None:
    env = make_env(sqlite_settings)
    made = make_result(env.queue.engine, score=score, category=category, n_instances=2)
    enqueue_emit(env.queue.engine, env.queue, "emit-fhir", made)
    run_until(env.queue, env.handlers, env.all_final)
    for rtype in TYPES:
        [resource] = env.current(rtype)
        assert_valid(resource)
    [obs] = env.current("Observation")
    [report] = env.current("DiagnosticReport")
    [prov] = env.current("Provenance")
    [study] = env.current("ImagingStudy")
    [device] = env.current("Device")
    assert report["status"] == "preliminary" and report["category"][0]["coding"][0]["code"] == "RAD"
    assert report["result"] == [{"reference": f"Observation/{obs['id']}"}]
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    assert "AI-generated" in report["conclusion"] and "cxr-demo:1.0.0" in report["conclusion"]
    assert category in report["conclusion"] or score is None
    assert obs["device"] == {"reference": f"Device/{device['id']}"}
    assert obs["derivedFrom"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    assert "performer" not in report
    if score is not None:
        assert obs["valueQuantity"] == {
            "value": round(score * 100, 1),
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        }
        assert obs["code"]["coding"][0]["system"].endswith("/CodeSystem/ai-findings")
        read = {e["what"]["identifier"]["value"] for e in prov["entity"][1:]}
        assert read == {f"urn:oid:{u}" for u in made.instance_uids}
    ext = {e["url"]: e for e in prov["extension"][0]["extension"]}
    assert ext["model-sha256"]["valueString"] == "a" * 64
    assert ext["threshold-high"]["valueDecimal"] == 0.8
    assert prov["target"][0]["reference"] == f"DiagnosticReport/{report['id']}/_history/1"
    assert prov["agent"][0]["who"]["reference"] == f"Device/{device['id']}"
    assert {s["uid"] for s in study["series"]} and study["numberOfInstances"] == 2


def test_rerun_is_idempotent_and_status_follows_the_clinician(settings: Settings) -> None:
    """preliminary, re-scored: still preliminary; a finding: final; re-scored after it: amended;
    a differing finding: corrected. Each change a new version, each with its Provenance."""
    env = make_env(settings)
    engine = env.queue.engine
    made = make_result(engine, score=0.5, category="low")
    enqueue_emit(engine, env.queue, "emit-fhir", made)
    run_until(env.queue, env.handlers, env.all_final)
    [job] = env.jobs("emit-fhir")
    assert job.id is not None
    env.queue.retry(job.id)  # a re-run of the same result
    run_until(env.queue, env.handlers, env.all_final)
    assert [v.version_id for v in env.versions("DiagnosticReport")] == [1]

    def statuses() -> list[tuple[str, str]]:
        run_until(env.queue, env.handlers, env.all_final)
        [report] = env.current("DiagnosticReport")
        [obs] = env.current("Observation")
        return [(report["meta"]["versionId"], report["status"]), ("obs", obs["status"])]

    rescore(engine, made.result_id, score=0.91, category="high")
    enqueue_emit(engine, env.queue, "emit-fhir", made)
    assert statuses() == [("2", "preliminary"), ("obs", "preliminary")]
    first = add_finding(engine, made, "confirm")
    enqueue_emit(engine, env.queue, "emit-fhir", made, feedback_id=first)
    assert statuses() == [("3", "final"), ("obs", "final")]
    [report] = env.current("DiagnosticReport")
    assert "Clinician review: pneumonia confirmed." in report["conclusion"]
    rescore(engine, made.result_id, score=0.95, category="high")
    enqueue_emit(engine, env.queue, "emit-fhir", made)
    assert statuses() == [("4", "amended"), ("obs", "amended")]
    second = add_finding(engine, made, "reject")
    enqueue_emit(engine, env.queue, "emit-fhir", made, feedback_id=second)
    assert statuses() == [("5", "corrected"), ("obs", "corrected")]
    [report] = env.current("DiagnosticReport")
    assert "Clinician review: no pneumonia." in report["conclusion"]

    versions = env.versions("DiagnosticReport")
    assert [(v.version_id, v.is_current) for v in versions] == [
        (1, False),
        (2, False),
        (3, False),
        (4, False),
        (5, True),
    ]
    assert len({v.resource_id for v in versions}) == 1
    provs = env.current("Provenance")
    assert len(provs) == 5, "one Provenance per report version"
    assert {p["target"][0]["reference"][-1] for p in provs} == {"1", "2", "3", "4", "5"}
    for rtype in TYPES:
        for resource in env.current(rtype):
            assert_valid(resource)


def test_feedback_off_keeps_results_preliminary(sqlite_settings: Settings) -> None:
    env = make_env(sqlite_settings, feedback_finalises=False)
    made = make_result(env.queue.engine)
    enqueue_emit(env.queue.engine, env.queue, "emit-fhir", made)
    finding = add_finding(env.queue.engine, made, "confirm")
    enqueue_emit(env.queue.engine, env.queue, "emit-fhir", made, feedback_id=finding)
    run_until(env.queue, env.handlers, env.all_final)
    [report] = env.current("DiagnosticReport")
    assert report["status"] == "preliminary" and "Clinician" not in report["conclusion"]


def test_shadow_results_are_not_emitted(sqlite_settings: Settings) -> None:
    env = make_env(sqlite_settings)
    made = make_result(env.queue.engine, shadow=True)
    enqueue_emit(env.queue.engine, env.queue, "emit-fhir", made)
    run_until(env.queue, env.handlers, env.all_final)
    assert env.current("DiagnosticReport") == []


def test_invalid_resource_is_refused() -> None:
    with pytest.raises(PermanentDelivery):
        validate_resource({"resourceType": "Observation", "status": "final", "bogus": 1})


def test_schema_catches_what_pydantic_misses() -> None:
    assert r4_errors({"resourceType": "Observation", "status": "done", "code": {"text": "x"}})
