"""ORU^R01 as interface engines expect it (issue 10): every message is parsed with hl7apy at
STRICT level (2.5.1) AND with python-hl7, and every field sits where the README's "Field
mapping" says: MSH-18 and the bytes, MSH-10, PID-3 assigning authority (OID / namespace /
default, multi-valued IDs as repetitions), PID-5 (Latin-1, CJK, ideographic groups), PV1,
placer/filler order numbers, OBR-4, the Study Instance UID, timestamps, status P/F/C, flags;
delimiters and control characters in every patient field; over-long fields truncated, never
dead-lettered."""

from __future__ import annotations

from typing import Any

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from sqlalchemy import Engine

from tests.hl7.conftest import make_env
from tests.mllp_listener import MllpListener
from tests.results_factory import Made, add_finding, enqueue_emit, make_result, rescore, run_until
from xraygate.core.config import Settings
from xraygate.core.db import get_engine, read_session, write_session
from xraygate.core.models import Patient, Study, StudyResult, utcnow
from xraygate.hl7.oru import build_oru
from xraygate.hl7.worker import control_id

#: Every delimiter, the escape character and the control characters that end a segment or an
#: MLLP frame (0x0B start block, 0x1C end block, CR, LF, NUL).
HOSTILE = "A|B^C&D~E\\F\x0bG\x1cH\rI\nJ\x00K"
#: In a DICOM value of a multi-valued text, ``\\`` separates values: the same without it.
HOSTILE_VALUE = HOSTILE.replace("\\", "")
#: In a person name ``^`` separates components (and ``=`` groups): the same without it.
HOSTILE_NAME = HOSTILE_VALUE.replace("^", "")
#: Short enough for an IS (20) namespace once escaped.
HOSTILE_ISSUER = "I|^\x0b&Z"
LATIN1_NAME = "MÜLLER^JÖRG^^DR.^JR."
CJK_NAME = "王^小明"
IDEOGRAPHIC_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"


#: ACK timeout for the strict listener (it parses every message with hl7apy before it answers,
#: slow on a loaded machine); a resend after a timeout is legitimate (at-least-once) anyway.
SLOW_PEER = 20.0


# --- helpers ----------------------------------------------------------------------------------
def first_arrival(listener: MllpListener) -> Any:
    """The one message sent (any resend carries the same control ID and the same bytes)."""
    [control] = {r.control_id for r in listener.received}
    first = listener.received[0]
    assert all(r.data == first.data for r in listener.received), "a resend is byte-identical"
    assert control == first.control_id
    return first


def engine_of(settings: Settings) -> Engine:
    return get_engine(settings.resolved_database_url)


def update(
    engine: Engine,
    made: Made,
    *,
    study: dict[str, str] | None = None,
    patient: dict[str, str] | None = None,
) -> None:
    """Set index columns the SCP's ingest would have filled from the DICOM."""
    with write_session(engine) as s:
        result = s.get(StudyResult, made.result_id)
        assert result is not None
        row = s.get(Study, result.study_pk)
        assert row is not None
        for name, value in (study or {}).items():
            setattr(row, name, value)
        s.add(row)
        person = s.get(Patient, row.patient_pk)
        assert person is not None
        for name, value in (patient or {}).items():
            setattr(person, name, value)
        s.add(person)


def build(settings: Settings, made: Made, status: str = "P") -> str:
    with read_session(engine_of(settings)) as s:
        result = s.get(StudyResult, made.result_id)
        assert result is not None
        study = s.get(Study, result.study_pk)
        assert study is not None
        patient = s.get(Patient, study.patient_pk)
        assert patient is not None
    return build_oru(settings, "XGTEST0001", result, study, patient, utcnow(), status)


def parse_both(er7: str) -> tuple[Any, hl7.Message]:
    """Both parsers, plus the framing rules an engine relies on."""
    assert er7.endswith("\r"), "the last segment is CR-terminated too"
    segments = er7[:-1].split("\r")
    assert all(seg[:3].isalnum() and seg[3] == "|" for seg in segments), segments
    assert all(ord(ch) >= 0x20 and ord(ch) != 0x7F for ch in er7.replace("\r", "")), (
        "no raw control character inside a segment"
    )
    strict = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    strict.validate()
    loose = hl7.parse(er7)
    assert [str(seg[0]) for seg in loose] == [seg.split("|")[0] for seg in segments]
    return strict, loose


def order_of(strict: Any) -> Any:
    return strict.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION


def obx_list(strict: Any) -> list[Any]:
    return [o.OBX for o in order_of(strict).ORU_R01_OBSERVATION]


# --- structure and fields ---------------------------------------------------------------------
def test_structure_and_where_everything_is(sqlite_settings: Settings) -> None:
    engine = engine_of(sqlite_settings)
    made = make_result(engine, score=0.91, category="high", accession="ACC-77")
    update(
        engine,
        made,
        study={
            "placer_order_number": "PL-4711",
            "requested_procedure_code": "XRCH2",
            "requested_procedure_scheme": "99RIS",
            "requested_procedure_meaning": "XR CHEST 2 VIEWS",
        },
    )
    er7 = build(sqlite_settings, made)
    strict, loose = parse_both(er7)
    assert [str(s[0]) for s in loose] == [
        *("MSH", "PID", "PV1", "ORC", "OBR", "NTE", "TQ1"),
        *("OBX", "OBX", "OBX"),
    ]
    assert loose["MSH.F18"] == strict.msh.msh_18.to_er7() == "UNICODE UTF-8"
    assert loose["MSH.F10"] == "XGTEST0001"
    assert loose["MSH.F15"] == loose["MSH.F16"] == "", "original acknowledgement mode"
    # PV1: minimal, the configured patient class (unknown by default)
    pv1 = strict.ORU_R01_PATIENT_RESULT.ORU_R01_PATIENT.ORU_R01_VISIT.PV1
    assert (pv1.pv1_1.to_er7(), pv1.pv1_2.to_er7()) == ("1", "U")
    # placer = the request's placer order number, filler = the accession number
    oo = order_of(strict)
    assert oo.ORC.orc_2.to_er7() == oo.OBR.obr_2.to_er7() == loose["OBR.F2"] == "PL-4711"
    assert oo.ORC.orc_3.to_er7() == oo.OBR.obr_3.to_er7() == loose["ORC.F3"] == "ACC-77"
    # OBR-4: the ordered procedure, our report code as the alternate
    assert (
        oo.OBR.obr_4.to_er7() == "XRCH2^XR CHEST 2 VIEWS^99RIS^18748-4^Diagnostic imaging study^LN"
    )
    # timestamps: OBR-7 / every OBX-14 the study's, OBR-22 the result's (with its offset)
    assert oo.OBR.obr_7.to_er7() == "20240514083102"
    assert len(oo.OBR.obr_22.to_er7()) == 19 and oo.OBR.obr_22.to_er7()[14] in "+-"
    assert [o.obx_14.to_er7() for o in obx_list(strict)] == ["20240514083102"] * 3
    # the Study Instance UID, for the image link
    uid_obx = obx_list(strict)[2]
    assert uid_obx.obx_2.to_er7() == "ST"
    assert uid_obx.obx_3.to_er7() == "110180^Study Instance UID^DCM"
    assert uid_obx.obx_5.to_er7() == made.study_uid
    assert str(loose.segments("OBX")[2][5]) == made.study_uid


def test_no_order_context_falls_back_and_invents_nothing(sqlite_settings: Settings) -> None:
    engine = engine_of(sqlite_settings)
    made = make_result(engine, score=0.1, category="low", accession="")
    strict, loose = parse_both(build(sqlite_settings, made))
    oo = order_of(strict)
    assert oo.ORC.orc_2.to_er7() == oo.ORC.orc_3.to_er7() == ""
    assert oo.OBR.obr_2.to_er7() == oo.OBR.obr_3.to_er7() == ""
    assert oo.OBR.obr_4.to_er7() == "18748-4^Diagnostic imaging study^LN"
    assert loose["OBR.F5"] == "", "low risk is not stat"


@pytest.mark.parametrize(
    ("issuer", "universal", "kind", "default", "expected"),
    [
        ("HOSP", "", "", "", "HOSP"),
        ("1.2.840.99999.1", "", "", "", "&1.2.840.99999.1&ISO"),  # an OID issuer
        ("HOSP", "1.2.840.99999.2", "ISO", "", "HOSP&1.2.840.99999.2&ISO"),  # qualifiers seq.
        ("", "1.2.840.99999.3", "ISO", "", "&1.2.840.99999.3&ISO"),
        ("HOSP", "hosp.example.org", "DNS", "", "HOSP&hosp.example.org&DNS"),
        ("", "", "", "", "RADIOLOGY"),  # none: MSH-4 sending facility
        ("", "", "", "MAIN", "MAIN"),  # none: the configured namespace
        ("", "", "", "2.16.840.1.99", "&2.16.840.1.99&ISO"),  # none: a configured OID
        ("", "", "", "MAIN&2.16.840.1.99&ISO", "MAIN&2.16.840.1.99&ISO"),
        (HOSTILE_ISSUER, "", "", "", "I\\F\\\\S\\\\X0B\\\\T\\Z"),
    ],
)
def test_pid3_assigning_authority(
    sqlite_settings: Settings,
    issuer: str,
    universal: str,
    kind: str,
    default: str,
    expected: str,
) -> None:
    settings = sqlite_settings.model_copy(update={"hl7_default_assigning_authority": default})
    engine = engine_of(settings)
    made = make_result(engine, patient_id="MRN9", issuer=issuer or "x")
    update(
        engine,
        made,
        patient={
            "issuer": issuer,
            "issuer_universal_id": universal,
            "issuer_universal_id_type": kind,
        },
    )
    er7 = build(settings, made)
    _strict, loose = parse_both(er7)
    assert f"\rPID|1||MRN9^^^{expected}^MR|" in er7
    assert str(loose.segment("PID")[3][0][3]) == expected and loose["PID.F3.R1.C5"] == "MR"
    if expected.startswith("&"):
        assert loose["PID.F3.R1.C4.S2"] == expected.split("&")[1]
        assert loose["PID.F3.R1.C4.S3"] == "ISO"


def test_multi_valued_ids_and_names_are_repetitions(sqlite_settings: Settings) -> None:
    engine = engine_of(sqlite_settings)
    made = make_result(engine, patient_id="MRN-A\\MRN-B", issuer="HOSP")
    update(engine, made, patient={"name": "DOE^JANE\\ROE^JANE"})
    strict, loose = parse_both(build(sqlite_settings, made))
    pid = strict.ORU_R01_PATIENT_RESULT.ORU_R01_PATIENT.PID
    assert [r.to_er7() for r in pid.pid_3] == ["MRN-A^^^HOSP^MR", "MRN-B^^^HOSP^MR"]
    assert [r.to_er7() for r in pid.pid_5] == ["DOE^JANE", "ROE^JANE"]
    assert len(loose.segment("PID")[3]) == 2
    assert loose["PID.F3.R2.C1"] == "MRN-B" and loose["PID.F3.R2.C4"] == "HOSP"
    assert "['" not in loose["PID.F3"], "never a Python list spelling"


@pytest.mark.parametrize(
    ("pn", "expected"),
    [
        (LATIN1_NAME, ["MÜLLER^JÖRG^^JR.^DR."]),  # DICOM prefix/suffix -> XPN suffix/prefix
        (CJK_NAME, ["王^小明"]),
        (
            IDEOGRAPHIC_NAME,
            ["Yamada^Tarou^^^^^L^A", "山田^太郎^^^^^L^I", "やまだ^たろう^^^^^L^P"],
        ),
        ("=山田^太郎", ["山田^太郎^^^^^L^I"]),
    ],
)
def test_names(sqlite_settings: Settings, pn: str, expected: list[str]) -> None:
    engine = engine_of(sqlite_settings)
    made = make_result(engine, name=pn)
    strict, loose = parse_both(build(sqlite_settings, made))
    pid = strict.ORU_R01_PATIENT_RESULT.ORU_R01_PATIENT.PID
    assert [r.to_er7() for r in pid.pid_5] == expected
    assert loose["PID.F5.R1.C1"] == expected[0].split("^")[0]


# --- hostile values -----------------------------------------------------------------------------
def hostile_result(engine: Engine) -> Made:
    made = make_result(engine, patient_id="P1", score=0.95, category="high", accession=HOSTILE)
    update(
        engine,
        made,
        patient={
            "patient_id": HOSTILE,
            "issuer": HOSTILE_ISSUER,
            "name": f"{HOSTILE_NAME}^JÖRG{HOSTILE_NAME}=山田{HOSTILE_NAME}^太郎",
            "birth_date": "1970|\x0b1",
            "sex": "F|\x1c",
        },
        study={
            "placer_order_number": HOSTILE,
            "requested_procedure_code": HOSTILE,
            "requested_procedure_scheme": "99|X",
            "requested_procedure_meaning": HOSTILE,
        },
    )
    return made


def test_delimiters_and_control_characters_in_every_patient_field(
    sqlite_settings: Settings,
) -> None:
    made = hostile_result(engine_of(sqlite_settings))
    er7 = build(sqlite_settings, made)
    strict, loose = parse_both(er7)
    assert "\x0b" not in er7 and "\x1c" not in er7 and "\x00" not in er7 and "\n" not in er7
    # the values come back unchanged through the receiver's unescaping (python-hl7's accessor
    # unescapes)
    # PatientID: the backslash separates two DICOM values, two PID-3 repetitions
    first, second = HOSTILE.split("\\")
    assert loose["PID.F3.R1.C1"] == first and loose["PID.F3.R2.C1"] == second
    assert loose["PID.F3.R1.C4"] == loose["PID.F3.R2.C4"] == HOSTILE_ISSUER
    assert loose["PID.F5.R1.C1"] == HOSTILE_NAME
    assert loose["PID.F5.R1.C2"] == f"JÖRG{HOSTILE_NAME}"
    assert loose["PID.F5.R2.C1"] == f"山田{HOSTILE_NAME}"
    assert loose["ORC.F2"] == loose["OBR.F2"] == HOSTILE
    assert loose["ORC.F3"] == loose["OBR.F3"] == HOSTILE
    assert loose["OBR.F4.R1.C1"] == loose["OBR.F4.R1.C2"] == HOSTILE
    assert loose["OBR.F4.R1.C3"] == "99|X"
    # values that are not dates or a known sex are not sent as such
    pid = strict.ORU_R01_PATIENT_RESULT.ORU_R01_PATIENT.PID
    assert pid.pid_7.to_er7() == "" and pid.pid_8.to_er7() == "U"
    assert len(loose.segments("PID")) == 1 and len(loose.segments("OBX")) == 3


def test_hostile_values_over_the_wire_to_a_strict_listener(sqlite_settings: Settings) -> None:
    with MllpListener(strict_parse=True) as listener:
        env = make_env(sqlite_settings, listener, hl7_timeout=SLOW_PEER)
        made = hostile_result(env.queue.engine)
        enqueue_emit(env.queue.engine, env.queue, "emit-hl7", made)
        run_until(env.queue, env.handlers, env.all_final)
    assert not listener.errors
    got = first_arrival(listener)
    assert got.action == "AA"
    assert got.data.count(b"\x0b") == 0 and got.data.count(b"\x1c") == 0, "framing intact"
    [row] = env.outbox()
    assert row.state == "delivered" and row.message == got.raw
    parse_both(got.raw)


# --- over-long fields: truncation, not a dead letter --------------------------------------------
def test_long_issuer_is_truncated_and_the_oru_is_delivered(sqlite_settings: Settings) -> None:
    long_issuer = "Saint Elsewhere General Hospital Medical Record Numbers" + "X" * 9
    assert len(long_issuer) == 64  # DICOM LO at its maximum
    with MllpListener(strict_parse=True) as listener:
        env = make_env(sqlite_settings, listener, hl7_timeout=SLOW_PEER)
        made = make_result(env.queue.engine, patient_id="MRN1")
        update(
            env.queue.engine,
            made,
            patient={"issuer": long_issuer, "name": "N" * 64 + "^" + "G" * 64},
            study={"placer_order_number": "P" * 64, "requested_procedure_meaning": "M" * 64},
        )
        enqueue_emit(env.queue.engine, env.queue, "emit-hl7", made)
        run_until(env.queue, env.handlers, env.all_final)
    assert not listener.errors
    [row] = env.outbox()
    assert row.state == "delivered", row.last_error
    _strict, loose = parse_both(row.message)
    assert loose["PID.F3.R1.C4"] == long_issuer[:20]
    assert loose["PID.F5.R1.C1"] == "N" * 64, "names fit (ST 199) and are not cut"
    assert loose["ORC.F2"] == "P" * 64


def test_truncation_never_splits_an_escape_sequence(sqlite_settings: Settings) -> None:
    engine = engine_of(sqlite_settings)
    made = make_result(engine)
    update(engine, made, patient={"issuer": "ABCDEFGHIJKLMNOPQR|Z"})  # \F\ at 19..21
    _strict, loose = parse_both(build(sqlite_settings, made))
    assert loose["PID.F3.R1.C4"] == "ABCDEFGHIJKLMNOPQR"


# --- character sets -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("charset", "codec", "name_bytes", "cjk_bytes"),
    [
        ("UNICODE UTF-8", "utf-8", "MÜLLER".encode(), "山田".encode()),
        ("8859/1", "latin-1", b"M\xdcLLER", b"??"),  # Latin-1 cannot say 山田: sent as ??
    ],
)
def test_msh18_and_the_bytes_on_the_wire(
    sqlite_settings: Settings, charset: str, codec: str, name_bytes: bytes, cjk_bytes: bytes
) -> None:
    with MllpListener(strict_parse=True) as listener:
        env = make_env(sqlite_settings, listener, hl7_charset=charset, hl7_timeout=SLOW_PEER)
        made = make_result(env.queue.engine, name="MÜLLER^JÖRG=山田^太郎")
        enqueue_emit(env.queue.engine, env.queue, "emit-hl7", made)
        run_until(env.queue, env.handlers, env.all_final)
    assert not listener.errors
    got = first_arrival(listener)
    assert got.action == "AA"
    assert f"|{charset}\r".encode() in got.data.split(b"\rPID")[0] + b"\r"
    assert name_bytes in got.data and cjk_bytes in got.data
    assert got.data.decode(codec) == got.raw
    _strict, loose = parse_both(got.raw)
    assert loose["MSH.F18"] == charset
    assert loose["PID.F5.R1.C1"] == "MÜLLER", "the engine shows MÜLLER, not MÃœLLER"


# --- MSH-10, status, flags ------------------------------------------------------------------------
def test_control_ids_are_unique(sqlite_settings: Settings) -> None:
    engine = engine_of(sqlite_settings)
    made = [make_result(engine, patient_id=f"P{i}") for i in range(3)]
    with read_session(engine) as s:
        results = [s.get(StudyResult, m.result_id) for m in made]
    assert all(r is not None for r in results)
    rows = [r for r in results if r is not None]
    ids = {
        control_id(channel, r, status)
        for r in rows
        for channel in ("hl7", "hl7-escalation")
        for status in ("P", "F", "C")
    }
    assert len(ids) == 3 * 2 * 3
    assert all(len(i) <= 20 for i in ids)
    assert control_id("hl7", rows[0], "P") == control_id("hl7", rows[0]), "stable"


def test_status_p_then_f_after_a_finding_then_c_after_a_change(
    sqlite_settings: Settings,
) -> None:
    with MllpListener(strict_parse=True) as listener:
        env = make_env(sqlite_settings, listener, hl7_timeout=SLOW_PEER)
        engine = env.queue.engine
        made = make_result(engine, score=0.9, category="high")
        enqueue_emit(engine, env.queue, "emit-hl7", made)
        run_until(env.queue, env.handlers, env.all_final)
        feedback = add_finding(engine, made, "confirm")
        enqueue_emit(engine, env.queue, "emit-hl7", made, feedback_id=feedback)
        run_until(env.queue, env.handlers, env.all_final)
        rescore(engine, made.result_id, score=0.95, category="high")  # re-scored after final
        enqueue_emit(engine, env.queue, "emit-hl7", made)
        run_until(env.queue, env.handlers, env.all_final)
    assert not listener.errors
    statuses = []
    seen: set[str] = set()
    for got in listener.received:
        if got.control_id in seen:
            continue  # at-least-once: a resend carries the same control ID and bytes
        seen.add(got.control_id)
        strict, _loose = parse_both(got.raw)
        oo = order_of(strict)
        obx11 = {o.obx_11.to_er7() for o in obx_list(strict)}
        assert obx11 == {oo.OBR.obr_25.to_er7()}, "OBR-25 and every OBX-11 agree"
        statuses.append(oo.OBR.obr_25.to_er7())
    assert statuses == ["P", "F", "C"]
    assert [r.state for r in env.outbox()] == ["delivered"] * 3


@pytest.mark.parametrize(
    ("score", "category", "risk_flag", "category_flag"),
    [(0.93, "high", "H", "A"), (0.1, "low", "N", ""), (0.7, "indeterminate", "", "")],
)
def test_abnormal_flags(
    sqlite_settings: Settings, score: float, category: str, risk_flag: str, category_flag: str
) -> None:
    made = make_result(engine_of(sqlite_settings), score=score, category=category)
    strict, _loose = parse_both(build(sqlite_settings, made))
    risk, cat, _uid = obx_list(strict)
    assert (risk.obx_8.to_er7(), cat.obx_8.to_er7()) == (risk_flag, category_flag)
    assert "L" not in (risk.obx_8.to_er7(), cat.obx_8.to_er7()), "low is N, never L"


def test_a_result_without_a_score_says_x_on_its_risk(sqlite_settings: Settings) -> None:
    made = make_result(engine_of(sqlite_settings), score=None, category="not-applicable")
    strict, _loose = parse_both(build(sqlite_settings, made, status="F"))
    risk, cat, uid = obx_list(strict)
    assert risk.obx_5.to_er7() == "" and risk.obx_11.to_er7() == "X"
    assert cat.obx_11.to_er7() == uid.obx_11.to_er7() == "F"


def test_configured_patient_class(sqlite_settings: Settings) -> None:
    settings = sqlite_settings.model_copy(update={"hl7_patient_class": "E"})
    made = make_result(engine_of(settings))
    _strict, loose = parse_both(build(settings, made))
    assert loose["PV1.F2"] == "E"


def test_a_finding_reaches_the_escalation_host_but_pages_nobody_again(
    sqlite_settings: Settings,
) -> None:
    from tests.http_target import HttpTarget

    with MllpListener() as listener, MllpListener() as escalation, HttpTarget() as hook:
        env = make_env(
            sqlite_settings,
            listener,
            hl7_timeout=SLOW_PEER,
            escalation_hl7_host="127.0.0.1",
            escalation_hl7_port=escalation.port,
            escalation_webhook_url=hook.url,
        )
        engine = env.queue.engine
        made = make_result(engine, score=0.95, category="high")
        enqueue_emit(engine, env.queue, "emit-hl7", made)
        run_until(env.queue, env.handlers, env.all_final)
        feedback = add_finding(engine, made, "confirm")
        enqueue_emit(engine, env.queue, "emit-hl7", made, feedback_id=feedback)
        run_until(env.queue, env.handlers, env.all_final)

    def statuses(received: list[Any]) -> list[str]:
        out: dict[str, str] = {}
        for got in received:
            out.setdefault(got.control_id, hl7.parse(got.raw)["OBR.F25"])
        return list(out.values())

    assert statuses(listener.received) == ["P", "F"]
    assert statuses(escalation.received) == ["P", "F"]
    assert len(hook.requests) == 1, "the webhook pages staff for the preliminary result only"
