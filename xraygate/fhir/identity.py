"""Business identifiers: how an EHR finds the patient, the order and each of our resources.

Patient (MRN): the system comes from, in order,

1. ``XRAYGATE_FHIR_PATIENT_ID_SYSTEMS`` (a JSON object) keyed by the UniversalEntityID of
   IssuerOfPatientIDQualifiersSequence, then by IssuerOfPatientID;
2. ``urn:oid:<UniversalEntityID>`` when its UniversalEntityIDType is ISO (the URI itself for
   URI/URL);
3. ``urn:oid:<IssuerOfPatientID>`` when the issuer is an OID;
4. ``<fhir_system_base>/patient-id/<issuer>`` for any other issuer;
5. ``XRAYGATE_FHIR_PATIENT_ID_DEFAULT_SYSTEM`` (default ``<fhir_system_base>/patient-id``) without
   an issuer.

Accession: ``XRAYGATE_FHIR_ACCESSION_SYSTEM`` (default ``<fhir_system_base>/accession``).

Multi-valued DICOM values (stored joined with ``\\``) become one identifier / name per value.

Search tokens (conditional references, conditional creates and updates) are escaped as FHIR
search says (``\\``, ``|``, ``,``, ``$`` take a backslash) and percent-encoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from xraygate.core.config import Settings
from xraygate.core.models import Patient

Json = dict[str, Any]


def dicom_values(text: str) -> list[str]:
    """The values of a DICOM text element as the index stores it (``\\``-separated)."""
    return [v.strip() for v in text.split("\\") if v.strip()]


def is_oid(text: str) -> bool:
    parts = text.split(".")
    return len(parts) > 1 and all(p.isdigit() for p in parts)


@dataclass(frozen=True)
class IdentitySystems:
    base: str
    patient_systems: Mapping[str, str] = field(default_factory=dict)
    patient_default: str | None = None
    accession: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentitySystems:
        return cls(
            base=settings.fhir_system_base.rstrip("/"),
            patient_systems=dict(settings.fhir_patient_id_systems),
            patient_default=settings.fhir_patient_id_default_system,
            accession=settings.fhir_accession_system,
        )

    def patient_system(self, patient: Patient) -> str:
        uid = patient.issuer_universal_id.strip()
        uid_type = patient.issuer_universal_id_type.strip().upper()
        issuer = patient.issuer.strip()
        for key in (uid, issuer):
            if key and key in self.patient_systems:
                return self.patient_systems[key]
        if uid and uid_type == "ISO" and is_oid(uid):
            return f"urn:oid:{uid}"
        if uid and uid_type in ("URI", "URL"):
            return uid
        if is_oid(issuer):
            return f"urn:oid:{issuer}"
        if issuer:
            return f"{self.base}/patient-id/{quote(issuer, safe='')}"
        return self.patient_default or f"{self.base}/patient-id"

    def accession_system(self) -> str:
        return self.accession or f"{self.base}/accession"


def token(system: str, value: str) -> str:
    """A ``system|value`` search token, escaped and percent-encoded for a query string."""
    return quote(f"{_escape(system)}|{_escape(value)}", safe=":/")


def _escape(text: str) -> str:
    out = text.replace("\\", "\\\\")
    for ch in "|,$":
        out = out.replace(ch, "\\" + ch)
    return out


def identifier_query(identifier: Json) -> str:
    """``identifier=<token>`` for an Identifier with system and value."""
    return f"identifier={token(str(identifier['system']), str(identifier['value']))}"
