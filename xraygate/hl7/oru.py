"""ORU^R01 (HL7 v2.5.1) for one study result: written as ER7 by :mod:`xraygate.hl7.er7`, parsed
back and validated with hl7apy at STRICT level before it is queued.

Mapping (README "Field mapping", ``shared/reference/hl7v2-oru-r01.md``):

- MSH-3..6 from settings; MSH-7 now; MSH-10 the caller's control ID (unique per result,
  revision and status; stable across retries); MSH-18 the configured character set; original
  acknowledgement mode (MSH-15/16 empty).
- PID-3 one repetition per DICOM PatientID value, ``ID^^^<assigning authority>^MR``:
  IssuerOfPatientID as the namespace, ``&<OID>&ISO`` when it is an OID (or the
  IssuerOfPatientIDQualifiersSequence universal ID when the index has it); the configured
  default when the DICOM has none. PID-5 from PatientName (one repetition per value; with
  ideographic / phonetic groups, one per group with XPN-7 ``L`` and XPN-8 ``A``/``I``/``P``).
  PID-7/8 birth date and sex.
- PV1-1 ``1``, PV1-2 the configured patient class (not in DICOM).
- ORC-2/OBR-2 placer order number (RequestAttributesSequence), ORC-3/OBR-3 filler order
  number = AccessionNumber; OBR-4 the requested procedure code when the DICOM has one, with
  our report code as the alternate; OBR-7 StudyDate+StudyTime, OBR-22 the result's time,
  OBR-25 the result status (``P`` until a clinician's finding, ``F``, ``C``); high risk: OBR-5
  and TQ1-9 ``S`` (stat).
- OBX 1 ``NM`` the risk in % (UCUM), reference range up to the high threshold, abnormal flag
  from :data:`xraygate.core.vocabulary.RESULT_TERMS`; OBX 2 ``CWE`` the category; OBX 3 ``ST``
  the Study Instance UID (``110180^Study Instance UID^DCM``) for the image link. OBX-11 the
  status, OBX-14 StudyDate+StudyTime. NTE: the result is AI output (and a demo model's).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from xraygate.core.config import Settings
from xraygate.core.errors import PermanentDelivery
from xraygate.core.models import Patient, Study, StudyResult
from xraygate.core.vocabulary import (
    AI_STATEMENT,
    DEMO_STATEMENT,
    HL7_STATUS,
    HL7_STATUS_NO_VALUE,
    LATE_IMAGES_NOTE,
    PNEUMONIA_RISK_CODE,
    PNEUMONIA_RISK_DISPLAY,
    REPORT_LOINC,
    RISK_CATEGORY_CODE,
    RISK_CATEGORY_DISPLAY,
    CategoryTerms,
    terms_for,
    thresholds_text,
)
from xraygate.hl7 import er7
from xraygate.hl7.er7 import FT, IS, ST, components, repetitions, segment, subcomponents, text

log = logging.getLogger(__name__)

SEX = {"M": "M", "F": "F", "O": "O"}
#: OBX-3 of the Study Instance UID (DICOM code 110180).
STUDY_UID_CODE = components("110180", "Study Instance UID", "DCM")
#: DICOM UniversalEntityIDType -> HL7 table 0301 (HD-3).
ENTITY_ID_TYPES = {
    "ISO": "ISO",
    "DNS": "DNS",
    "URI": "URI",
    "UUID": "UUID",
    "X400": "x400",
    "X500": "x500",
}
OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
NAME_REPRESENTATIONS = ("A", "I", "P")


def values(stored: str) -> list[str]:
    """The values of a possibly multi-valued DICOM text as the index stores it (``\\``-joined)."""
    return [v.strip() for v in stored.split("\\") if v.strip()]


def hl7_ts(value: datetime) -> str:
    """An HL7 DTM with its UTC offset (a naive time is UTC: SQLite hands those back)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.strftime("%Y%m%d%H%M%S%z")


def dicom_ts(study: Study) -> str:
    """StudyDate+StudyTime as an HL7 DTM (no zone: DICOM carries none)."""
    da = study.study_date.strip()
    if len(da) != 8 or not da.isdigit():
        return ""
    tm = "".join(ch for ch in study.study_time.split(".")[0] if ch.isdigit())[:6]
    return da + tm if len(tm) in (2, 4, 6) else da


def hd(value: str) -> str:
    """A hierarchic designator from a setting: a namespace, an OID, or ``NAMESPACE&OID&TYPE``."""
    namespace, _, rest = value.partition("&")
    universal, _, kind = rest.partition("&")
    if not rest and OID.match(namespace.strip()):
        namespace, universal, kind = "", namespace.strip(), "ISO"
    return subcomponents(text(namespace.strip(), IS), text(universal.strip()), text(kind.strip()))


def assigning_authority(patient: Patient, settings: Settings) -> str:
    """CX-4: the DICOM issuer (with its universal ID when known), else the configured default."""
    issuer = patient.issuer.strip()
    universal = patient.issuer_universal_id.strip()
    kind = patient.issuer_universal_id_type.strip().upper()
    if universal and OID.match(universal) and kind in ("", "ISO"):
        kind = "ISO"
    if universal and kind in ENTITY_ID_TYPES:
        if issuer == universal:
            issuer = ""
        return subcomponents(text(issuer, IS), text(universal), ENTITY_ID_TYPES[kind])
    if OID.match(issuer):
        return subcomponents("", issuer, "ISO")
    if issuer:
        if len(text(issuer, ST)) > IS:
            log.warning("IssuerOfPatientID longer than %d characters: PID-3 carries its start", IS)
        return text(issuer, IS)
    return hd(settings.hl7_default_assigning_authority or settings.hl7_sending_facility)


def patient_identifiers(patient: Patient, settings: Settings) -> str:
    """PID-3: one CX per PatientID value, all with the same assigning authority."""
    authority = assigning_authority(patient, settings)
    ids = values(patient.patient_id) or ["UNKNOWN"]
    return repetitions(components(text(pid), "", "", authority, "MR") for pid in ids)


def _xpn(group: str, representation: str) -> str:
    dicom = [p.strip() for p in group.split("^")] + [""] * 5
    family, given, middle, prefix, suffix = dicom[:5]
    name = [text(family), text(given), text(middle), text(suffix), text(prefix)]
    if not any(name):
        return ""
    if representation:
        name += ["", "L", representation]
    return components(*name)


def patient_names(pn: str) -> str:
    """PID-5 from a DICOM PN (family^given^middle^prefix^suffix -> XPN, prefix and suffix swap
    places). A name with ideographic/phonetic groups gives one repetition per group."""
    names: list[str] = []
    for value in values(pn):
        groups = value.split("=")[:3]
        if len([g for g in groups if g.strip("^ ")]) <= 1 and groups[0].strip("^ "):
            names.append(_xpn(groups[0], ""))
            continue
        names.extend(_xpn(g, NAME_REPRESENTATIONS[i]) for i, g in enumerate(groups))
    return repetitions(names)


def patient_name(pn: str) -> str:
    """The first PID-5 repetition (the alphabetic name)."""
    return patient_names(pn).split("~")[0]


def escape(value: str) -> str:
    """HL7 escaping of one component value (no length limit)."""
    return text(value, FT)


def procedure_code(study: Study) -> str:
    """OBR-4: the requested procedure code (our report code as the alternate), else ours."""
    ours = (text(REPORT_LOINC.code), text(REPORT_LOINC.display), "LN")
    code = study.requested_procedure_code.strip()
    if not code:
        return components(*ours)
    # DICOM and HL7 spell LOINC (LN), SNOMED CT (SCT) and sites' local designators alike
    scheme = study.requested_procedure_scheme.strip() or "L"
    meaning = study.requested_procedure_meaning.strip()
    return components(text(code), text(meaning), text(scheme), *ours)


def note_text(result: StudyResult) -> str:
    thresholds = thresholds_text(result.thresholds)
    note = f"{AI_STATEMENT} Model {result.model_version}." + (
        f" {thresholds}" if thresholds else ""
    )
    return f"{note} {DEMO_STATEMENT}" if result.demo_model else note


def build_oru(
    settings: Settings,
    control_id: str,
    result: StudyResult,
    study: Study,
    patient: Patient,
    now: datetime,
    status: str = HL7_STATUS,
    *,
    late_images: bool = False,
) -> str:
    """The ORU^R01 as ER7 (every segment CR-terminated), validated at STRICT level.

    ``status``: the HL7 result status (table 0085) of OBR-25 and of every valued OBX-11.
    ``late_images``: images arrived after the study's first ORU; the NTE says the result is
    revised.
    """
    terms = terms_for(result.category)
    taken = dicom_ts(study)
    reported = hl7_ts(result.updated_at or now)
    segments = [
        _msh(settings, control_id, now),
        _pid(patient, settings),
        segment("PV1", {1: "1", 2: text(settings.hl7_patient_class.strip() or "U", IS)}),
        *_order(result, study, terms, status, taken, reported, late_images),
        _risk_obx(result, terms, status, taken, reported),
        _category_obx(terms, status, taken),
        segment(
            "OBX",
            {1: "3", 2: "ST", 3: STUDY_UID_CODE, 4: "1", 5: text(study.study_instance_uid)}
            | {11: status, 14: taken},
        ),
    ]
    message = er7.representable(er7.message(segments), settings.hl7_charset)
    validate(message)
    return message


def validate(message: str) -> None:
    """Parse the message back with hl7apy at STRICT level (structure, lengths, data types)."""
    try:
        parsed = parse_message(message, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        parsed.validate()
    except HL7apyException as exc:
        raise PermanentDelivery(f"ORU^R01 failed HL7 validation: {type(exc).__name__}") from exc


def _msh(s: Settings, control_id: str, now: datetime) -> str:
    return segment(
        "MSH",
        {
            3: text(s.hl7_sending_application, IS),
            4: text(s.hl7_sending_facility, IS),
            5: text(s.hl7_receiving_application, IS),
            6: text(s.hl7_receiving_facility, IS),
            7: hl7_ts(now),
            9: "ORU^R01^ORU_R01",
            10: text(control_id, 20),
            11: s.hl7_processing_id,
            12: "2.5.1",
            18: s.hl7_charset,
        },
    )


def _pid(patient: Patient, settings: Settings) -> str:
    fields = {1: "1", 3: patient_identifiers(patient, settings), 5: patient_names(patient.name)}
    if len(patient.birth_date) == 8 and patient.birth_date.isdigit():
        fields[7] = patient.birth_date
    fields[8] = SEX.get(patient.sex.strip().upper(), "U")
    return segment("PID", fields)


def _order(
    result: StudyResult,
    study: Study,
    terms: CategoryTerms,
    status: str,
    taken: str,
    reported: str,
    late_images: bool = False,
) -> list[str]:
    placer = text(study.placer_order_number.strip())
    filler = text(study.accession_number.strip())
    orc = segment("ORC", {1: "RE", 2: placer, 3: filler})
    obr = segment(
        "OBR",
        {
            1: "1",
            2: placer,
            3: filler,
            4: procedure_code(study),
            5: "S" if terms.urgent else "",
            7: taken,
            22: reported,
            24: "RAD",
            25: status,
        },
    )
    out = [orc, obr, segment("NTE", {1: "1", 3: text(note_text(result), FT)})]
    if late_images:
        out.append(segment("NTE", {1: "2", 3: text(LATE_IMAGES_NOTE, FT)}))
    if terms.urgent:
        out.append(segment("TQ1", {1: "1", 9: "S^Stat^HL70485"}))
    return out


def _risk_obx(
    result: StudyResult, terms: CategoryTerms, status: str, taken: str, reported: str
) -> str:
    label = text(result.model_version)
    fields = {
        1: "1",
        2: "NM",
        3: components(text(PNEUMONIA_RISK_CODE), text(PNEUMONIA_RISK_DISPLAY), "L"),
        4: "1",
        11: HL7_STATUS_NO_VALUE,  # results cannot be obtained for this observation
        14: taken,
        17: components(label, label, "L"),
        18: components(text(result.model_version.partition(":")[0]), "XRAYGATE"),
        19: reported,
    }
    if result.score is not None:
        fields |= {5: f"{result.score * 100:.1f}", 6: "%^percent^UCUM", 11: status}
        high = result.thresholds.get("high")
        if high is not None:
            fields[7] = f"0-{float(high) * 100:g}"
        fields[8] = terms.hl7_risk_flag or ""
    return segment("OBX", fields)


def _category_obx(terms: CategoryTerms, status: str, taken: str) -> str:
    concept = terms.concept
    value = components(text(concept.code), text(concept.display), "SCT" if terms.snomed else "L")
    fields = {
        1: "2",
        2: "CWE",
        3: components(text(RISK_CATEGORY_CODE), text(RISK_CATEGORY_DISPLAY), "L"),
        4: "1",
        5: value,
        8: terms.hl7_category_flag or "",
        11: status,
        14: taken,
    }
    return segment("OBX", fields)
