"""The ORU^R01 goes over real MLLP to a real listener and parses back at STRICT validation."""

from __future__ import annotations

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from tests.hl7.conftest import make_env
from tests.mllp_listener import MllpListener
from tests.results_factory import enqueue_emit, make_result, run_until
from xraygate.core.config import Settings
from xraygate.core.models import utcnow
from xraygate.hl7.mllp import MllpClient, outcome_of_ack, parse_ack
from xraygate.hl7.oru import build_oru, escape, patient_name


def test_oru_over_mllp_parses_back_strict(
    sqlite_settings: Settings, listener: MllpListener
) -> None:
    env = make_env(sqlite_settings, listener)
    made = make_result(env.queue.engine, name="O'BRIEN^ANNE|X", score=0.873, category="high")
    enqueue_emit(env.queue.engine, env.queue, "emit-hl7", made, priority=10)
    run_until(env.queue, env.handlers, lambda: len(listener.accepted()) == 1 and env.all_final())
    assert not listener.errors
    [_msg] = listener.parsed
    er7 = listener.received[0].raw
    m = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    m.validate()
    assert m.msh.msh_9.to_er7() == "ORU^R01^ORU_R01" and m.msh.msh_12.to_er7() == "2.5.1"
    pr = m.ORU_R01_PATIENT_RESULT
    pid = pr.ORU_R01_PATIENT.PID
    assert pid.pid_3.to_er7() == "MRN123^^^HOSP^MR"
    assert pid.pid_5.to_er7() == "O'BRIEN^ANNE\\F\\X"
    assert pid.pid_7.to_er7() == "19700101" and pid.pid_8.to_er7() == "F"
    oo = pr.ORU_R01_ORDER_OBSERVATION
    # no placer order number in the DICOM: ORC-2/OBR-2 empty, never the accession number
    assert oo.ORC.orc_2.to_er7() == oo.OBR.obr_2.to_er7() == ""
    assert oo.ORC.orc_3.to_er7() == oo.OBR.obr_3.to_er7() == "ACC-1"
    assert oo.OBR.obr_25.to_er7() == "P"
    assert oo.OBR.obr_5.to_er7() == "S", "high risk is stat priority"
    assert "AI-generated" in oo.NTE.nte_3.to_er7() and "DEMONSTRATION" in oo.NTE.nte_3.to_er7()
    obx_nm, obx_cwe, obx_uid = (o.OBX for o in oo.ORU_R01_OBSERVATION)
    assert obx_uid.obx_5.to_er7() == made.study_uid
    assert obx_nm.obx_2.to_er7() == "NM" and obx_nm.obx_5.to_er7() == "87.3"
    assert obx_nm.obx_6.to_er7() == "%^percent^UCUM" and obx_nm.obx_8.to_er7() == "H"
    assert obx_nm.obx_11.to_er7() == "P"
    assert obx_cwe.obx_2.to_er7() == "CWE" and obx_cwe.obx_5.to_er7() == "75540009^High^SCT"
    [row] = env.outbox()
    assert row.state == "delivered" and row.control_id == m.msh.msh_10.to_er7()
    assert parse_ack(row.response or "")[0] == "AA"


def test_low_risk_has_no_abnormal_flag_or_priority(sqlite_settings: Settings) -> None:
    made_settings = sqlite_settings
    from xraygate.core.db import get_engine, read_session
    from xraygate.core.models import Patient, Study, StudyResult

    engine = get_engine(made_settings.resolved_database_url)
    made = make_result(engine, score=0.2, category="low")
    with read_session(engine) as s:
        result = s.get(StudyResult, made.result_id)
        assert result is not None
        study = s.get(Study, result.study_pk)
        assert study is not None
        patient = s.get(Patient, study.patient_pk)
        assert patient is not None
    er7 = build_oru(made_settings, "XGTEST", result, study, patient, utcnow())
    m = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    oo = m.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION
    assert oo.OBR.obr_5.to_er7() == ""
    obx_nm, obx_cwe, _uid = (o.OBX for o in oo.ORU_R01_OBSERVATION)
    assert obx_nm.obx_8.to_er7() == "N" and obx_cwe.obx_5.to_er7() == "62482003^Low^SCT"


def test_escaping_and_names() -> None:
    assert escape("a|b^c&d~e\\f") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    assert patient_name("Yamada^Tarou=山田^太郎") == "Yamada^Tarou^^^^^L^A"


def test_ack_outcomes() -> None:
    ack = "MSH|^~\\&|EHR|H|X|R|20240101||ACK^R01^ACK|1|P|2.5.1\rMSA|{}|CID1|why\r"
    assert outcome_of_ack(ack.format("AA"), "CID1").result == "delivered"
    assert outcome_of_ack(ack.format("CA"), "CID1").result == "delivered"
    assert outcome_of_ack(ack.format("AE"), "CID1").result == "retry"
    rejected = outcome_of_ack(ack.format("AR"), "CID1")
    assert rejected.result == "reject" and "why" in rejected.detail
    assert outcome_of_ack(ack.format("AA"), "OTHER").result == "retry"


def test_client_reconnects_after_peer_closed_idle_connection() -> None:
    with MllpListener(script=lambda n, cid: "drop" if n == 1 else "AA") as lst:
        client = MllpClient("127.0.0.1", lst.port, timeout=2)
        msg = "MSH|^~\\&|A|B|C|D|20240101||ORU^R01^ORU_R01|{}|P|2.5.1"
        assert parse_ack(client.send(msg.format("C1")))[1] == "C1"
        # the listener drops the kept-alive connection on message 1: one fresh try delivers it
        assert parse_ack(client.send(msg.format("C2")))[1] == "C2"
        assert [r.control_id for r in lst.received] == ["C1", "C2", "C2"]
        client.close()
