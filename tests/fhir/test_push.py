"""FHIR push to a real HTTP server on loopback: 500 then 201 is retried and delivered, 422 is
dead-lettered with the OperationOutcome recorded."""

from __future__ import annotations

import json

import pytest

from tests.fhir.conftest import make_env
from tests.fhir.r4schema import r4_errors
from tests.http_target import ISSUE_422, HttpTarget
from tests.results_factory import enqueue_emit, make_result, run_until
from xraygate.core.config import Settings

pytestmark = pytest.mark.integration


def test_500_then_201_is_delivered(settings: Settings) -> None:
    with HttpTarget(
        script=lambda n: (500, {}) if n == 0 else (201, {"resourceType": "Bundle"})
    ) as t:
        env = make_env(settings, fhir_push_url=t.url, fhir_push_auth_token="Bearer s3cret")
        made = make_result(env.queue.engine)
        enqueue_emit(env.queue.engine, env.queue, "emit-fhir", made)
        run_until(env.queue, env.handlers, env.all_final)
    assert len(t.requests) == 2 and t.requests[0].body == t.requests[1].body
    req = t.requests[1]
    assert req.headers["Authorization"] == "Bearer s3cret"
    assert req.headers["Content-Type"] == "application/fhir+json"
    bundle = json.loads(req.body)
    assert bundle["type"] == "transaction" and r4_errors(bundle) == []
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types == ["ImagingStudy", "Device", "Observation", "DiagnosticReport", "Provenance"]
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT"] * 4 + ["POST"]
    [row] = env.outbox()
    assert row.state == "delivered" and row.attempts == 2
    # the local store does not depend on the push
    assert env.current("DiagnosticReport")


def test_422_dead_letters_with_operation_outcome(sqlite_settings: Settings) -> None:
    with HttpTarget(script=lambda n: (422, ISSUE_422)) as t:
        env = make_env(sqlite_settings, fhir_push_url=t.url)
        made = make_result(env.queue.engine)
        enqueue_emit(env.queue.engine, env.queue, "emit-fhir", made)
        run_until(env.queue, env.handlers, env.all_final)
    assert len(t.requests) == 1, "4xx is not retried"
    [row] = env.outbox()
    assert row.state == "dead" and "Unknown patient" in (row.last_error or "")
    assert json.loads(row.response or "{}")["resourceType"] == "OperationOutcome"
    [job] = env.jobs("push-fhir")
    assert job.state == "dead"
    [emit] = env.jobs("emit-fhir")
    assert emit.state == "done", "storing locally succeeded on its own"


def test_unreachable_push_target_is_retried(sqlite_settings: Settings) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = make_env(
        sqlite_settings, fhir_push_url=f"http://127.0.0.1:{port}/fhir", delivery_max_attempts=2
    )
    made = make_result(env.queue.engine)
    enqueue_emit(env.queue.engine, env.queue, "emit-fhir", made)
    run_until(env.queue, env.handlers, env.all_final)
    [row] = env.outbox()
    assert row.state == "dead" and row.attempts == 2 and "connection" in (row.last_error or "")


def test_amended_push_bundle_is_valid_r4(settings: Settings) -> None:
    """Found by the cluster harness: in the Bundle of a report's second version, resources that
    had not changed (Patient, Device) carried ``"status": null`` (Patient has no status), which
    the official R4 schema refuses. (The push no longer carries a Patient at all.)"""
    from tests.results_factory import rescore

    with HttpTarget() as t:
        env = make_env(settings, fhir_push_url=t.url)
        made = make_result(env.queue.engine)
        enqueue_emit(env.queue.engine, env.queue, "emit-fhir", made)
        run_until(env.queue, env.handlers, env.all_final)
        rescore(env.queue.engine, made.result_id, score=0.2, category="low")
        enqueue_emit(env.queue.engine, env.queue, "emit-fhir", made)
        run_until(env.queue, env.handlers, lambda: len(t.requests) == 2 and env.all_final())
    amended = json.loads(t.requests[1].body)
    resources = [entry.pop("resource") for entry in amended["entry"]]
    assert [r4_errors(r) for r in [amended, *resources]] == [[]] * (len(resources) + 1)
    assert "Patient" not in {r["resourceType"] for r in resources}
    assert all(r.get("status", "x") is not None for r in resources)
    [report] = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    assert report["status"] == "preliminary", "re-scored before any clinician finding"
