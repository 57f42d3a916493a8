"""The FHIR search parameters served, declared once: :data:`SEARCH_PARAMS` (how each matches, on
which column of ``fhir_resources``), ``_include`` and ``_sort`` values. The search (``search``)
and the CapabilityStatement (``capability``) are both driven by this table, so ``metadata``
lists exactly what is implemented.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SP = "http://hl7.org/fhir/SearchParameter/"


class ParamKind(StrEnum):
    """How a parameter matches, and on which column of ``fhir_resources``."""

    ID = "id"  # resource_id equals the value
    LAST_UPDATED = "last-updated"  # last_updated within the date range
    DATE = "date"  # date (the resource's clinical time) within the date range
    STATUS = "status"  # status equals the code
    TOKEN = "token"  # noqa: S105 (not a secret): [system|]code among ``Param.column``'s tokens
    PATIENT = "patient"  # patient_ref: a Patient reference, or chained .identifier
    BASED_ON = "based-on"  # based_on: a reference, or :identifier=<accession>
    REFERENCE = "reference"  # refs: a reference held under the parameter's name


_FHIR_TYPES = {
    ParamKind.ID: "token",
    ParamKind.LAST_UPDATED: "date",
    ParamKind.DATE: "date",
    ParamKind.STATUS: "token",
    ParamKind.TOKEN: "token",
    ParamKind.PATIENT: "reference",
    ParamKind.BASED_ON: "reference",
    ParamKind.REFERENCE: "reference",
}


@dataclass(frozen=True)
class Param:
    kind: ParamKind
    definition: str  # the canonical SearchParameter
    column: str = ""  # TOKEN: the fhir_resources column holding the tokens
    ref_type: str = ""  # PATIENT, BASED_ON, REFERENCE: the resource type a bare id names
    doc: str = ""

    @property
    def type(self) -> str:
        """The FHIR search parameter type."""
        return _FHIR_TYPES[self.kind]


_ID = Param(ParamKind.ID, SP + "Resource-id")
_LAST = Param(ParamKind.LAST_UPDATED, SP + "Resource-lastUpdated")
_PATIENT = Param(
    ParamKind.PATIENT,
    SP + "clinical-patient",
    ref_type="Patient",
    doc="Patient/<id>, <id>; chained: patient.identifier=<system>|<value>",
)


def _subject(resource: str) -> Param:
    return Param(
        ParamKind.PATIENT,
        f"{SP}{resource}-subject",
        ref_type="Patient",
        doc="Patient/<id>; chained: subject.identifier=<system>|<value>",
    )


def _status(resource: str) -> Param:
    return Param(ParamKind.STATUS, f"{SP}{resource}-status")


def _token(definition: str, column: str, doc: str = "") -> Param:
    return Param(ParamKind.TOKEN, SP + definition, column=column, doc=doc)


def _reference(definition: str, ref_type: str) -> Param:
    return Param(ParamKind.REFERENCE, SP + definition, ref_type=ref_type)


SEARCH_PARAMS: dict[str, dict[str, Param]] = {
    "DiagnosticReport": {
        "_id": _ID,
        "_lastUpdated": _LAST,
        "patient": _PATIENT,
        "subject": _subject("DiagnosticReport"),
        "identifier": _token(
            "clinical-identifier", "identifiers", "report id or accession number (v2-0203 ACSN)"
        ),
        "status": _status("DiagnosticReport"),
        "category": _token("DiagnosticReport-category", "categories"),
        "code": _token("clinical-code", "codes"),
        "date": Param(
            ParamKind.DATE,
            SP + "clinical-date",
            doc="effective time; prefixes eq ne gt lt ge le sa eb",
        ),
        "based-on": Param(
            ParamKind.BASED_ON,
            SP + "DiagnosticReport-based-on",
            ref_type="ServiceRequest",
            doc="ServiceRequest/<id>, or :identifier=<accession>",
        ),
        "result": _reference("DiagnosticReport-result", "Observation"),
    },
    "Observation": {
        "_id": _ID,
        "_lastUpdated": _LAST,
        "patient": _PATIENT,
        "subject": _subject("Observation"),
        "status": _status("Observation"),
        "category": _token("Observation-category", "categories"),
        "code": _token("clinical-code", "codes"),
        "date": Param(ParamKind.DATE, SP + "clinical-date"),
        "derived-from": _reference("Observation-derived-from", "ImagingStudy"),
        "device": _reference("Observation-device", "Device"),
    },
    "ImagingStudy": {
        "_id": _ID,
        "_lastUpdated": _LAST,
        "patient": _PATIENT,
        "subject": _subject("ImagingStudy"),
        "identifier": _token(
            "clinical-identifier",
            "identifiers",
            "urn:dicom:uid|urn:oid:<StudyInstanceUID> or accession number",
        ),
        "status": _status("ImagingStudy"),
        "started": Param(ParamKind.DATE, SP + "ImagingStudy-started"),
        "modality": _token("ImagingStudy-modality", "codes"),
    },
    "Patient": {
        "_id": _ID,
        "_lastUpdated": _LAST,
        "identifier": _token("Patient-identifier", "identifiers"),
    },
    "Device": {
        "_id": _ID,
        "_lastUpdated": _LAST,
        "identifier": _token(
            "Device-identifier",
            "identifiers",
            "<base>/model|<name:version> or <base>/model-sha256|<sha256>",
        ),
        "status": _status("Device"),
    },
    "Provenance": {
        "_id": _ID,
        "_lastUpdated": _LAST,
        "target": Param(
            ParamKind.REFERENCE,
            SP + "Provenance-target",
            ref_type="DiagnosticReport",
            doc="DiagnosticReport/<id> (any version), Observation/<id>",
        ),
    },
}

#: _include values: (source type, param) -> JSON path of the references followed.
INCLUDES: dict[str, tuple[str, str]] = {
    "DiagnosticReport:result": ("DiagnosticReport", "result"),
    "DiagnosticReport:patient": ("DiagnosticReport", "subject"),
    "DiagnosticReport:subject": ("DiagnosticReport", "subject"),
    "Observation:device": ("Observation", "device"),
    "Observation:derived-from": ("Observation", "derivedFrom"),
    "Observation:patient": ("Observation", "subject"),
    "ImagingStudy:patient": ("ImagingStudy", "subject"),
}
#: _revinclude values: (referring type, its reference parameter) - any matched type.
REVINCLUDES: dict[str, tuple[str, str]] = {"Provenance:target": ("Provenance", "target")}
SORTS = {"date": "date", "started": "date", "_lastUpdated": "last_updated", "_id": "resource_id"}
# _totalMethod: sent by fhirpy's count() (an Aidbox extension); we always count exactly.
IGNORED = {"_format", "_pretty", "_totalMethod"}
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
