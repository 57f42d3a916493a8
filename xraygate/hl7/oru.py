"""ORU^R01 (HL7 v2.5.1) for one study result, built with hl7apy at STRICT validation.

Mapping (see ``shared/reference/hl7v2-oru-r01.md``):

- MSH-3..6 from settings, MSH-10 the caller's control ID (stable across retries), original-mode
  acknowledgements (MSH-15/16 empty).
- PID-3 ``PatientID^^^Issuer^MR``, PID-5/7/8 from the DICOM patient module, nothing invented
  (no PV1: the patient class is not in DICOM).
- ORC/OBR: accession number as placer and filler order number; OBR-25 ``P`` (preliminary);
  high risk: OBR-5 and TQ1-9 priority ``S`` (stat).
- OBX 1 ``NM``: the risk in % (UCUM), reference range up to the high threshold, abnormal flag
  ``H`` for high risk; OBX 2 ``CWE``: the category (SNOMED High / Low / Indeterminate), flag
  ``A`` for high risk; OBX-11 ``P``. NTE: the result is AI output (and a demo model's).
"""

from __future__ import annotations

from datetime import datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException

from xraygate.core.config import Settings
from xraygate.core.errors import PermanentDelivery
from xraygate.core.models import Patient, Study, StudyResult
from xraygate.core.vocabulary import (
    AI_STATEMENT,
    DEMO_STATEMENT,
    HL7_STATUS,
    HL7_STATUS_NO_VALUE,
    PNEUMONIA_RISK_CODE,
    PNEUMONIA_RISK_DISPLAY,
    REPORT_LOINC,
    RISK_CATEGORY_CODE,
    RISK_CATEGORY_DISPLAY,
    CategoryTerms,
    terms_for,
    thresholds_text,
)

SEX = {"M": "M", "F": "F", "O": "O"}


def escape(text: str) -> str:
    """HL7 escaping of a component value (``\\`` first, then the delimiters)."""
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def hl7_ts(value: datetime) -> str:
    return value.strftime("%Y%m%d%H%M%S%z")


def dicom_ts(study: Study) -> str:
    """StudyDate+StudyTime as an HL7 DTM (no zone: DICOM carries none)."""
    da = study.study_date.strip()
    if len(da) != 8 or not da.isdigit():
        return ""
    tm = "".join(ch for ch in study.study_time.split(".")[0] if ch.isdigit())[:6]
    return da + tm if len(tm) in (2, 4, 6) else da


def patient_cx(patient: Patient) -> str:
    pid = escape(patient.patient_id[: 15 * 4]) or "UNKNOWN"
    issuer = escape(patient.issuer)
    return f"{pid}^^^{issuer}^MR" if issuer else f"{pid}^^^^MR"


def patient_name(pn: str) -> str:
    parts = [escape(p.strip()) for p in pn.split("=")[0].split("^")][:5]
    return "^".join(parts).rstrip("^")


def note_text(result: StudyResult) -> str:
    thresholds = thresholds_text(result.thresholds)
    text = f"{AI_STATEMENT} Model {result.model_version}." + (
        f" {thresholds}" if thresholds else ""
    )
    return f"{text} {DEMO_STATEMENT}" if result.demo_model else text


def build_oru(
    settings: Settings,
    control_id: str,
    result: StudyResult,
    study: Study,
    patient: Patient,
    now: datetime,
) -> str:
    """The ORU^R01 as ER7 (segments separated by CR), validated at STRICT level."""
    try:
        msg = Message("ORU_R01", version="2.5.1", validation_level=VALIDATION_LEVEL.STRICT)
        _msh(msg, settings, control_id, now)
        pr = msg.add_group("ORU_R01_PATIENT_RESULT")
        _pid(pr.add_group("ORU_R01_PATIENT").add_segment("PID"), patient)
        _order(pr.add_group("ORU_R01_ORDER_OBSERVATION"), result, study, now)
        msg.validate()
        er7: str = msg.to_er7()
    except HL7apyException as exc:
        raise PermanentDelivery(f"ORU^R01 failed HL7 validation: {exc}") from exc
    return er7


def _msh(msg: Message, s: Settings, control_id: str, now: datetime) -> None:
    msg.msh.msh_3 = escape(s.hl7_sending_application)
    msg.msh.msh_4 = escape(s.hl7_sending_facility)
    msg.msh.msh_5 = escape(s.hl7_receiving_application)
    msg.msh.msh_6 = escape(s.hl7_receiving_facility)
    msg.msh.msh_7 = hl7_ts(now)
    msg.msh.msh_9 = "ORU^R01^ORU_R01"
    msg.msh.msh_10 = control_id
    msg.msh.msh_11 = s.hl7_processing_id
    msg.msh.msh_12 = "2.5.1"


def _pid(seg: Message, patient: Patient) -> None:
    seg.pid_1 = "1"
    seg.pid_3 = patient_cx(patient)
    name = patient_name(patient.name)
    if name:
        seg.pid_5 = name
    if len(patient.birth_date) == 8 and patient.birth_date.isdigit():
        seg.pid_7 = patient.birth_date
    seg.pid_8 = SEX.get(patient.sex.upper(), "U")


def _order(oo: Message, result: StudyResult, study: Study, now: datetime) -> None:
    urgent = terms_for(result.category).urgent
    accession = escape(study.accession_number)
    orc = oo.add_segment("ORC")
    orc.orc_1 = "RE"
    obr = oo.add_segment("OBR")
    obr.obr_1 = "1"
    if accession:
        orc.orc_2 = orc.orc_3 = obr.obr_2 = obr.obr_3 = accession
    obr.obr_4 = f"{REPORT_LOINC.code}^{REPORT_LOINC.display}^LN"
    if urgent:
        obr.obr_5 = "S"
    taken = dicom_ts(study)
    if taken:
        obr.obr_7 = taken
    obr.obr_22 = hl7_ts(result.updated_at or now)
    obr.obr_24 = "RAD"
    obr.obr_25 = HL7_STATUS
    nte = oo.add_segment("NTE")
    nte.nte_1 = "1"
    nte.nte_3 = escape(note_text(result))
    if urgent:
        tq1 = oo.add_group("ORU_R01_TIMING_QTY").add_segment("TQ1")
        tq1.tq1_1 = "1"
        tq1.tq1_9 = "S^Stat^HL70485"
    terms = terms_for(result.category)
    _risk_obx(oo.add_group("ORU_R01_OBSERVATION").add_segment("OBX"), result, terms, taken, now)
    _category_obx(oo.add_group("ORU_R01_OBSERVATION").add_segment("OBX"), terms)


def _risk_obx(
    obx: Message, result: StudyResult, terms: CategoryTerms, taken: str, now: datetime
) -> None:
    obx.obx_1 = "1"
    obx.obx_2 = "NM"
    obx.obx_3 = f"{PNEUMONIA_RISK_CODE}^{escape(PNEUMONIA_RISK_DISPLAY)}^L"
    obx.obx_4 = "1"
    if result.score is not None:
        obx.obx_5 = f"{result.score * 100:.1f}"
        obx.obx_6 = "%^percent^UCUM"
        high = result.thresholds.get("high")
        if high is not None:
            obx.obx_7 = f"0-{float(high) * 100:g}"
        if terms.hl7_risk_flag:
            obx.obx_8 = terms.hl7_risk_flag
        obx.obx_11 = HL7_STATUS
    else:
        obx.obx_11 = HL7_STATUS_NO_VALUE  # results cannot be obtained for this observation
    if taken:
        obx.obx_14 = taken
    label = escape(result.model_version)
    obx.obx_17 = f"{label}^{label}^L"
    obx.obx_18 = f"{escape(result.model_version.partition(':')[0])}^XRAYGATE"
    obx.obx_19 = hl7_ts(result.updated_at or now)


def _category_obx(obx: Message, terms: CategoryTerms) -> None:
    obx.obx_1 = "2"
    obx.obx_2 = "CWE"
    obx.obx_3 = f"{RISK_CATEGORY_CODE}^{escape(RISK_CATEGORY_DISPLAY)}^L"
    obx.obx_4 = "1"
    obx.obx_5 = f"{terms.concept.code}^{terms.concept.display}^{'SCT' if terms.snomed else 'L'}"
    if terms.hl7_category_flag:
        obx.obx_8 = terms.hl7_category_flag
    obx.obx_11 = HL7_STATUS
