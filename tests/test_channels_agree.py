"""FHIR and HL7 say the same thing for the same result: both channels' emit jobs run over one
result, and what each one sent is read back (FHIR Observation/DiagnosticReport as stored, the
ORU^R01 from the outbox, parsed with hl7apy) and compared through one table of meanings."""

from __future__ import annotations

from typing import Any

import pytest
from hl7apy.parser import parse_message

from tests.fhir.conftest import make_env as fhir_env
from tests.hl7.conftest import make_env as hl7_env
from tests.mllp_listener import MllpListener
from tests.results_factory import Made, add_finding, enqueue_emit, make_result, rescore, run_until
from xraygate.core.config import Settings

#: One meaning per row: (category, FHIR interpretation, HL7 OBX-8 of the risk, urgent?)
MEANINGS = {
    "high": ("H", "H", True),
    "low": ("N", "N", False),
    "indeterminate": ("IND", "", False),
}
#: Result status: FHIR status -> HL7 OBR-25 / OBX-11 (a change after final is C in HL7).
STATUS = {"preliminary": "P", "final": "F", "amended": "C", "corrected": "C"}


def emitted(settings: Settings, made: Made) -> tuple[dict[str, Any], dict[str, Any], Any]:
    with MllpListener(strict_parse=True) as listener:
        fhir = fhir_env(settings)
        hl7 = hl7_env(settings, listener)
        engine = fhir.queue.engine
        enqueue_emit(engine, fhir.queue, "emit-fhir", made)
        enqueue_emit(engine, hl7.queue, "emit-hl7", made)
        handlers = {**fhir.handlers, **hl7.handlers}
        run_until(fhir.queue, handlers, fhir.all_final)
    [obs] = fhir.current("Observation")
    [report] = fhir.current("DiagnosticReport")
    [row] = hl7.outbox()
    return obs, report, parse_message(row.message, find_groups=True)


@pytest.mark.parametrize(
    ("score", "category"), [(0.9, "high"), (0.1, "low"), (0.7, "indeterminate")]
)
def test_fhir_and_hl7_say_the_same(sqlite_settings: Settings, score: float, category: str) -> None:
    made = make_result(fhir_env(sqlite_settings).queue.engine, score=score, category=category)
    obs, report, oru = emitted(sqlite_settings, made)
    interpretation, flag, urgent = MEANINGS[category]
    oo = oru.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION
    obx = [o.OBX for o in oo.ORU_R01_OBSERVATION]
    risk = next(o for o in obx if o.obx_2.to_er7() == "NM")
    # the risk: same number, same flag
    assert obs["valueQuantity"]["value"] == float(risk.obx_5.to_er7())
    assert obs["interpretation"][0]["coding"][0]["code"] == interpretation
    assert risk.obx_8.to_er7() == flag
    assert interpretation != "L" and flag != "L", "low is normal, never L"
    # the category: same SNOMED CT concept
    category_obx = next(o for o in obx if o.obx_2.to_er7() == "CWE" and "SCT" in o.obx_5.to_er7())
    concept = obs["component"][0]["valueCodeableConcept"]["coding"][0]["code"]
    assert category_obx.obx_5.to_er7().split("^")[0] == concept
    # the status
    assert STATUS[report["status"]] == oo.OBR.obr_25.to_er7() == risk.obx_11.to_er7()
    assert obs["status"] == report["status"]
    # urgency: stat priority in HL7 only for what FHIR calls high
    assert (oo.OBR.obr_5.to_er7() == "S") is urgent


@pytest.mark.parametrize(
    ("findings", "rescored", "fhir_status"),
    [
        ([], False, "preliminary"),
        ([], True, "preliminary"),
        (["confirm"], False, "final"),
        (["confirm"], True, "amended"),
        (["confirm", "reject"], False, "corrected"),
    ],
)
def test_both_channels_give_the_same_status(
    sqlite_settings: Settings, findings: list[str], rescored: bool, fhir_status: str
) -> None:
    engine = fhir_env(sqlite_settings).queue.engine
    made = make_result(engine, score=0.9, category="high")
    for finding in findings:
        add_finding(engine, made, finding)
    if rescored:
        rescore(engine, made.result_id, score=0.95, category="high")
    obs, report, oru = emitted(sqlite_settings, made)
    oo = oru.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION
    risk = next(o.OBX for o in oo.ORU_R01_OBSERVATION if o.OBX.obx_2.to_er7() == "NM")
    assert report["status"] == obs["status"] == fhir_status
    assert oo.OBR.obr_25.to_er7() == risk.obx_11.to_er7() == STATUS[fhir_status]
