"""Delivery states tell the truth (issue 12): per channel ``not configured`` / ``pending`` /
``delivered`` / ``failed``, from real HL7 deliveries over MLLP, the same in the views the pages
and the API use and in ``xraygate results``."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.hl7.conftest import make_env
from tests.mllp_listener import MllpListener
from tests.results_factory import enqueue_emit, make_result, run_until
from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.core.delivery_state import (
    CHANNELS,
    DeliveryChannel,
    DeliveryState,
    channel_state,
    overall,
    register_channel,
)
from xraygate.gateway.views.studies import StudyStatus, study_view, worklist

NC, P, D, F = (
    DeliveryState.NOT_CONFIGURED,
    DeliveryState.PENDING,
    DeliveryState.DELIVERED,
    DeliveryState.FAILED,
)


def test_channel_state_rules() -> None:
    assert channel_state(configured=False, message_states=[]) == NC
    assert channel_state(configured=True, message_states=[]) == P
    assert channel_state(configured=True, message_states=["pending", "delivered"]) == P
    assert channel_state(configured=True, message_states=["delivered", "delivered"]) == D
    assert channel_state(configured=True, message_states=["delivered", "dead"]) == F
    # switched off after it sent: the record still says what happened
    assert channel_state(configured=False, message_states=["delivered"]) == D
    assert overall({"hl7": NC, "fhir-push": NC}) == NC
    assert overall({"hl7": D, "fhir-push": NC}) == D
    assert overall({"hl7": D, "fhir-push": P}) == P
    assert overall({"hl7": F, "fhir-push": D}) == F


def test_register_channel_adds_a_channel_and_replaces_by_name() -> None:
    before = list(CHANNELS)
    try:
        register_channel(DeliveryChannel("pacs", "PACS", lambda s: s.hl7_host))
        register_channel(DeliveryChannel("pacs", "PACS (SR)", lambda s: None))
        assert [c.name for c in CHANNELS] == [*(c.name for c in before), "pacs"]
        assert CHANNELS[-1].label == "PACS (SR)"
    finally:
        CHANNELS[:] = before


def test_with_no_output_on_a_scored_study_is_never_delivered(sqlite_settings: Settings) -> None:
    engine = db.get_engine(sqlite_settings.resolved_database_url)
    made = make_result(engine)
    with db.read_session(engine) as session:
        [row] = worklist(session, sqlite_settings)
    assert row.status == StudyStatus.SCORED
    assert row.delivery == {"hl7": NC, "fhir-push": NC}
    assert row.study_uid == made.study_uid


def test_hl7_delivered_and_failed_per_channel(sqlite_settings: Settings) -> None:
    with MllpListener(script=lambda n, cid: "AR" if n == 1 else "AA") as listener:
        env = make_env(sqlite_settings, listener)
        engine = env.queue.engine
        good = make_result(engine, accession="A-GOOD")
        enqueue_emit(engine, env.queue, "emit-hl7", good)
        run_until(env.queue, env.handlers, env.all_final, workers=1)
        bad = make_result(engine, accession="A-BAD", patient_id="P2")
        enqueue_emit(engine, env.queue, "emit-hl7", bad)
        run_until(env.queue, env.handlers, env.all_final, workers=1)
        waiting = make_result(engine, accession="A-WAIT", patient_id="P3")
        with db.read_session(engine) as session:
            rows = {r.accession: r for r in worklist(session, env.settings)}
            view = study_view(session, env.settings, good.study_uid)
    assert rows["A-GOOD"].delivery == {"hl7": D, "fhir-push": NC}
    assert rows["A-GOOD"].status == StudyStatus.DELIVERED
    assert rows["A-BAD"].delivery == {"hl7": F, "fhir-push": NC}
    assert rows["A-BAD"].status == StudyStatus.FAILED
    assert rows["A-WAIT"].delivery == {"hl7": P, "fhir-push": NC}
    assert rows["A-WAIT"].status == StudyStatus.SCORED
    assert view is not None and [d.label for d in view.deliveries] == ["HL7 ORU^R01"]
    assert waiting.study_uid in {r.study_uid for r in rows.values()}


def test_results_cli_shows_the_same_states(sqlite_settings: Settings) -> None:
    from xraygate.cli import app

    engine = db.get_engine(sqlite_settings.resolved_database_url)
    make_result(engine, accession="A-CLI")
    runner = CliRunner()
    out = runner.invoke(app, ["results", "--json"])
    assert out.exit_code == 0, out.output
    [item] = json.loads(out.output)
    assert item["delivery"] == {"hl7": "not configured", "fhir-push": "not configured"}
    table = runner.invoke(app, ["results"])
    assert table.exit_code == 0, table.output
    header, *_rows = [line for line in table.output.splitlines() if line.strip()]
    assert "accession" in header and "HL7 ORU^R01" in header and "FHIR push" in header
    assert "A-CLI" in table.output and table.output.count("not configured") == 2
