"""What a result says: the codes, words and flags every output channel renders from.

One table for ``fhir/`` (Observation, DiagnosticReport), ``hl7/`` (ORU^R01 OBR/OBX/NTE) and the
coming DICOM SR of ``pacs/``. A channel picks its columns; it never spells a code, a flag or a
sentence of its own, so changing what a category means is an edit here only.

FHIR and HL7 say the same thing for the same result (tests/test_channels_agree.py compares them):
each column here is one channel's spelling of one meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from xraygate.core.models.results import Category


@dataclass(frozen=True)
class Term:
    code: str
    display: str


# --- what is observed ----------------------------------------------------------------------------
#: Our code system for AI findings (under ``fhir_system_base``); HL7 v2 sends these codes as
#: local (``L``) codes. LOINC has no code for "probability of pneumonia".
AI_FINDINGS_CODESYSTEM_PATH = "/CodeSystem/ai-findings"
PNEUMONIA_RISK_CODE = "pneumonia-risk"
PNEUMONIA_RISK_DISPLAY = "Pneumonia risk (AI estimated probability of pneumonia)"
RISK_CATEGORY_CODE = "pneumonia-risk-category"
RISK_CATEGORY_DISPLAY = "Pneumonia risk category (AI triage)"
#: The report's code (LOINC): DiagnosticReport.code, OBR-4.
REPORT_LOINC = Term("18748-4", "Diagnostic imaging study")
#: What the risk is of (SNOMED CT): the DICOM SR's finding type.
PNEUMONIA_SNOMED = Term("233604007", "Pneumonia")
#: The procedure a result reports on (SNOMED CT): the DICOM SR's "Procedure reported".
CHEST_XRAY_SNOMED = Term("399208008", "Plain chest X-ray")
#: Our code system in DICOM: a private coding scheme designator ("99" prefix, PS3.16 8.2), for
#: the codes above that no standard terminology has (pneumonia risk, its category, not applicable).
DICOM_CODING_SCHEME = "99XRAYGATE"


# --- its status ----------------------------------------------------------------------------------
class ResultStatus(StrEnum):
    """Where a result stands in its life (which one: :mod:`xraygate.core.result_status`).

    AI output is ``preliminary`` until a clinician gives a finding on the study (feedback
    confirm/reject, when ``XRAYGATE_FEEDBACK_FINALISES``): then ``final``. A final result that
    the model re-scores (new images, a new model version) is ``amended``; a final result whose
    clinician finding is changed is ``corrected``. A preliminary result re-scored stays
    ``preliminary`` (in R4, ``amended`` means changed *after* final).
    """

    PRELIMINARY = "preliminary"
    FINAL = "final"
    AMENDED = "amended"
    CORRECTED = "corrected"


@dataclass(frozen=True)
class StatusTerms:
    #: FHIR DiagnosticReport.status / Observation.status.
    fhir: str
    #: HL7 v2 result status (table 0085, OBR-25 and OBX-11): a change after final is ``C``.
    hl7: str


STATUS_TERMS: Mapping[ResultStatus, StatusTerms] = {
    ResultStatus.PRELIMINARY: StatusTerms("preliminary", "P"),
    ResultStatus.FINAL: StatusTerms("final", "F"),
    ResultStatus.AMENDED: StatusTerms("amended", "C"),
    ResultStatus.CORRECTED: StatusTerms("corrected", "C"),
}

#: A result's status before any clinician finding (kept for callers without a status at hand).
FHIR_STATUS = STATUS_TERMS[ResultStatus.PRELIMINARY].fhir
HL7_STATUS = STATUS_TERMS[ResultStatus.PRELIMINARY].hl7
#: HL7 OBX-11 of an OBX whose value could not be obtained (whatever the result's status).
HL7_STATUS_NO_VALUE = "X"


# --- what is said beside it ----------------------------------------------------------------------
#: The flag of a result that images arriving after its first report revised (FHIR
#: DiagnosticReport.conclusion, HL7 NTE): each channel says it once its own first report of the
#: study is older than the study's latest image (core/study_stability.py).
LATE_IMAGES_NOTE = "Revised result: further images of the study arrived after the first report."


AI_STATEMENT = "AI-generated preliminary result for clinician review; not a diagnosis."
DEMO_STATEMENT = "DEMONSTRATION MODEL: not a medical device, not for clinical use."


@dataclass(frozen=True)
class CategoryTerms:
    """How one triage category is said in each format."""

    #: The category as a concept: SNOMED CT qualifier value, or (``snomed`` False) our own code.
    concept: Term
    snomed: bool
    #: FHIR Observation.interpretation (v3-ObservationInterpretation); None: not sent.
    fhir_interpretation: Term | None
    #: HL7 OBX-8 abnormal flag (table 0078) on the numeric risk OBX; None: empty.
    hl7_risk_flag: str | None
    #: HL7 OBX-8 abnormal flag on the category OBX; None: empty.
    hl7_category_flag: str | None
    #: Staff must see it first: HL7 OBR-5 and TQ1-9 ``S`` (stat), escalation targets.
    urgent: bool


RESULT_TERMS: Mapping[Category, CategoryTerms] = {
    # High: FHIR interpretation H (plus the category coding in a component), HL7 H on the risk,
    # A (abnormal) on the category.
    Category.HIGH: CategoryTerms(
        concept=Term("75540009", "High"),
        snomed=True,
        fhir_interpretation=Term("H", "High"),
        hl7_risk_flag="H",
        hl7_category_flag="A",
        urgent=True,
    ),
    Category.LOW: CategoryTerms(
        concept=Term("62482003", "Low"),
        snomed=True,
        # A low risk is normal (N) in both channels, never L: L means "below the reference
        # range", an abnormal flag on flowsheets.
        fhir_interpretation=Term("N", "Normal"),
        hl7_risk_flag="N",
        hl7_category_flag=None,
        urgent=False,
    ),
    Category.INDETERMINATE: CategoryTerms(
        concept=Term("82334004", "Indeterminate"),
        snomed=True,
        # FHIR interprets it as IND (its own coding); HL7 sends no abnormal flag (table 0078
        # has no "indeterminate"; an empty OBX-8 is neither normal nor abnormal; see README).
        fhir_interpretation=Term("IND", "Indeterminate"),
        hl7_risk_flag=None,
        hl7_category_flag=None,
        urgent=False,
    ),
    Category.NOT_APPLICABLE: CategoryTerms(
        concept=Term("not-applicable", "Not applicable"),
        snomed=False,
        fhir_interpretation=None,
        hl7_risk_flag=None,
        hl7_category_flag=None,
        urgent=False,
    ),
}


def category_of(value: str) -> Category:
    """A stored category; anything unknown is said as not applicable."""
    try:
        return Category(value)
    except ValueError:
        return Category.NOT_APPLICABLE


def terms_for(value: str) -> CategoryTerms:
    return RESULT_TERMS[category_of(value)]


def data_absent_reason(value: str) -> Term:
    """FHIR Observation.dataAbsentReason of a result without a score: no image the model may
    read (``not-applicable``), or none it knows (out of distribution, ``indeterminate``:
    ``unknown``, the result's reason says why)."""
    if category_of(value) == Category.NOT_APPLICABLE:
        return Term("not-applicable", "Not Applicable")
    return Term("unknown", "Unknown")


def statement(demo_model: bool) -> str:
    """The AI statement (and the demonstration-model warning) every result carries."""
    return f"{AI_STATEMENT} {DEMO_STATEMENT}" if demo_model else AI_STATEMENT


def thresholds_text(thresholds: Mapping[str, Any]) -> str:
    """``Thresholds: high > 80%, low < 20%.``, or empty when either threshold is unknown."""
    high, low = thresholds.get("high"), thresholds.get("low")
    if high is None or low is None:
        return ""
    return f"Thresholds: high > {float(high) * 100:g}%, low < {float(low) * 100:g}%."
