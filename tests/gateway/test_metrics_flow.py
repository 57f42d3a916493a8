"""/metrics follows a real study through the pipeline: a C-STORE over a real association into
the SCP, the real workers (inference with the bundled demo model, FHIR, HL7, de-identification),
then clinician feedback through the gateway; the gateway then serves the study as delivered."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tests.gateway.conftest import CHEST_CR, gateway_settings, token
from xraygate.core.db import get_engine, read_session
from xraygate.core.models import Job, JobState
from xraygate.core.queue import JobQueue
from xraygate.core.storage import store_from_settings
from xraygate.gateway.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def total(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and want <= set(ls))


def test_metrics_change_as_a_study_flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.results_factory import run_until
    from xraygate.core.quality import gauges
    from xraygate.dicom_scp.sender import send_paths
    from xraygate.dicom_scp.server import start_scp
    from xraygate.service import job_handlers

    monkeypatch.setattr(gauges, "MIN_SECONDS", 0.0)  # every scrape sees the new results
    settings = gateway_settings(tmp_path, dicom_host="127.0.0.1", dicom_port=0)
    store = store_from_settings(settings)
    queue = JobQueue.from_settings(settings)
    client = TestClient(create_app(settings))
    before = scrape(client)
    # an empty queue reads 0 for every kind (series present), not "no data"
    for kind in ("infer", "emit-fhir", "emit-hl7", "deidentify"):
        assert (("xraygate_queue_depth", (("kind", kind), ("state", "pending")))) in before
        assert total(before, "xraygate_queue_depth", kind=kind) == 0
        assert (("xraygate_queue_oldest_age_seconds", (("kind", kind),))) in before

    scp = start_scp(settings, store, queue)
    try:
        report = send_paths([CHEST_CR], host="127.0.0.1", port=scp.port, called_aet="XRAYGATE")
    finally:
        scp.shutdown()
    assert report.sent == 1
    received = scrape(client)
    assert total(received, "xraygate_instances_received_total") == (
        total(before, "xraygate_instances_received_total") + 1
    )
    assert total(received, "xraygate_bytes_received_total") >= (
        total(before, "xraygate_bytes_received_total") + CHEST_CR.stat().st_size - 4096
    )
    assert total(received, "xraygate_queue_depth", kind="infer", state="pending") == 1
    assert total(received, "xraygate_queue_oldest_age_seconds", kind="infer") >= 0

    engine = get_engine(settings.resolved_database_url)

    def settled() -> bool:
        with read_session(engine) as s:
            open_jobs = s.scalars(
                select(Job).where(Job.state.in_([JobState.PENDING, JobState.RUNNING]))  # type: ignore[attr-defined]
            ).all()
        return not open_jobs

    handlers = job_handlers(settings, store, queue)
    started = time.monotonic()
    run_until(queue, handlers, settled, timeout=240)  # type: ignore[arg-type]
    scored = scrape(client)
    assert time.monotonic() - started < 240
    assert total(scored, "xraygate_queue_depth", kind="infer", state="pending") == 0
    assert total(scored, "xraygate_queue_oldest_age_seconds", kind="infer") == 0
    for kind in ("infer", "emit-fhir", "emit-hl7"):
        done = total(scored, "xraygate_jobs_finished_total", kind=kind, outcome="done")
        assert done >= total(before, "xraygate_jobs_finished_total", kind=kind, outcome="done") + 1
    assert total(scored, "xraygate_studies_scored_total") == (
        total(before, "xraygate_studies_scored_total") + 1
    )
    assert total(scored, "xraygate_inference_seconds_count") > total(
        before, "xraygate_inference_seconds_count"
    )
    # the real chest CR is outside the demo model's (synthetic) training distribution: the
    # study is indeterminate without a score, and the OOD gate counts the image
    assert total(scored, "xraygate_studies_by_category", category="indeterminate") == 1
    assert (
        sum(total(scored, "xraygate_study_scores", decile=f"{n / 10:.1f}") for n in range(10)) == 0
    )
    assert total(scored, "xraygate_out_of_distribution_total") == (
        total(before, "xraygate_out_of_distribution_total") + 1
    )
    assert total(scored, "xraygate_model_info", state="active") == 1
    assert total(scored, "xraygate_model_results", state="active") == 1
    assert total(scored, "xraygate_model_out_of_distribution_ratio", state="active") == 1.0

    clinician = {"Authorization": f"Bearer {token(settings, 'clinician')}"}
    [row] = client.get("/api/worklist", headers=clinician).json()
    assert row["status"] in ("scored", "delivered") and row["score"] is None
    assert row["category"] == "indeterminate"
    posted = client.post(
        f"/api/studies/{row['study_uid']}/feedback", json={"finding": "reject"}, headers=clinician
    )
    assert posted.status_code == 201
    after = scrape(client)
    assert total(after, "xraygate_feedback_total") == total(before, "xraygate_feedback_total") + 1
    assert total(after, "xraygate_audit_events_total", outcome="written") > total(
        before, "xraygate_audit_events_total", outcome="written"
    )
    assert total(after, "xraygate_http_requests_total", route="/api/worklist") > 0


def test_every_declared_metric_is_produced() -> None:
    """Each metric defined in core/metrics.py is updated somewhere in xraygate (no declared
    series that nothing ever sets): its Python name is used outside core/metrics.py."""
    import ast

    import xraygate
    from xraygate.core import metrics

    root = Path(xraygate.__file__).parent
    declared = {
        name
        for name, value in vars(metrics).items()
        if name.isupper() and hasattr(value, "_name") and hasattr(value, "collect")
    }
    used: set[str] = set()
    for path in root.rglob("*.py"):
        if path == root / "core" / "metrics.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in declared:
                used.add(node.attr)
            elif isinstance(node, ast.alias) and node.name in declared:
                used.add(node.name)
    assert len(declared) > 20
    assert declared - used == set(), "declared but never produced"
