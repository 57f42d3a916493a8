"""Reads of patient data leave audit records (served to admins as FHIR AuditEvent); the request
log is JSON with the study's correlation id and no PHI."""

from __future__ import annotations

import io
import json
import logging

from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import select
from sqlmodel import col

from tests.gateway.conftest import Gateway
from xraygate.core.db import get_engine, read_session
from xraygate.core.logging import JsonFormatter, _ContextFilter, correlation_id
from xraygate.core.models import AuditRecord


def _records(gw: Gateway) -> list[AuditRecord]:
    with read_session(get_engine(gw.settings.resolved_database_url)) as s:
        return list(s.scalars(select(AuditRecord).order_by(col(AuditRecord.id))))


def test_patient_data_reads_are_audited_with_who_what_where_outcome(gw: Gateway) -> None:
    uid = gw.high.study_uid
    clinician = gw.headers("clinician")
    assert gw.client.get(f"/api/studies/{uid}", headers=clinician).status_code == 200
    sop = gw.high.instance_uids[0]
    image = gw.client.get(f"/api/studies/{uid}/instances/{sop}/rendered", headers=clinician)
    assert image.status_code == 200
    assert gw.client.get("/fhir/Patient?identifier=P-HIGH", headers=gw.headers("ehr")).is_success
    assert gw.client.get(f"/api/studies/{uid}", headers=gw.headers("ehr")).status_code == 403
    assert gw.client.get("/healthz").status_code == 200  # not patient data: not audited
    assert gw.client.get("/fhir/metadata", headers=gw.headers("ehr")).status_code == 200

    rows = _records(gw)
    assert [(r.actor, r.route, r.status) for r in rows] == [
        ("dr.house", "/api/studies/{study_uid}", 200),
        ("dr.house", "/api/studies/{study_uid}/instances/{sop_uid}/rendered", 200),
        ("ehr-system", "/fhir/{resource_type}", 200),
        ("ehr-system", "/api/studies/{study_uid}", 403),
    ]
    first = rows[0]
    assert first.study_uid == uid and first.action == "R" and first.auth_method == "jwt"
    assert first.roles == "clinician" and first.source == "testclient"
    assert first.user_agent.startswith("testclient") and first.recorded_at is not None
    assert rows[2].query == "identifier=P-HIGH"


def test_audit_trail_is_a_valid_fhir_bundle_for_admins(gw: Gateway) -> None:
    uid = gw.high.study_uid
    gw.client.get(f"/api/studies/{uid}", headers=gw.headers("clinician"))
    gw.client.get(f"/api/studies/{uid}")  # anonymous: refused, still audited
    response = gw.client.get(f"/api/admin/audit?study={uid}", headers=gw.headers("admin"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(response.json())
    events = [e.resource for e in bundle.entry or []]
    assert bundle.total == 2 and len(events) == 2
    refused, read = events
    assert refused.outcome == "4" and refused.agent[0].who.display == "anonymous"
    assert read.outcome == "0" and read.agent[0].who.display == "dr.house"
    assert read.entity[0].what.identifier.value == f"urn:oid:{uid}"
    assert read.agent[0].network.address == "testclient"
    one = gw.client.get(f"/api/admin/audit/{read.id}", headers=gw.headers("admin")).json()
    assert one["resourceType"] == "AuditEvent" and one["id"] == read.id
    # reading the audit trail is itself audited
    assert _records(gw)[-1].route == "/api/admin/audit/{event_id}"


def test_request_log_is_json_with_study_correlation_and_no_phi(gw: Gateway) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("xraygate")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        uid = gw.high.study_uid
        gw.client.get(f"/studies/{uid}", headers=gw.headers("clinician"))
        gw.client.get(f"/api/studies/{uid}", headers=gw.headers("clinician"))
        gw.client.get("/fhir/Patient?identifier=P-HIGH", headers=gw.headers("ehr"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [line for line in lines if line["logger"] == "xraygate.gateway"]
    assert len(requests) == 3
    assert requests[0]["correlation_id"] == correlation_id(uid)
    assert requests[0]["msg"].startswith("GET /studies/{study_uid} -> 200")
    text = stream.getvalue()
    for phi in (uid, "HIGH", "HUGO", "P-HIGH", gw.high.instance_uids[0], "20240514"):
        assert phi not in text
