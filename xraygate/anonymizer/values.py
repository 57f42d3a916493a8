"""Replacement values: keyed-hash UIDs and IDs, per-patient date shifts, dummies and text scrubbing.

Every pseudonym is an HMAC-SHA256 of the original value under the site secret, so the same input
and secret give the same output in every run and process, and nobody without the secret can link
or reverse them. UIDs become ``2.25.<128-bit integer>`` (PS3.5 B.2).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from pydicom._uid_dict import UID_dictionary

DUMMY_TEXT = "ANONYMIZED"
DUMMY_BY_VR: dict[str, Any] = {
    "PN": "ANONYMOUS",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000D",
    "DS": "0",
    "IS": "0",
    "AE": "ANONYMOUS",
    "CS": "ANONYMIZED",
    "UR": "urn:anonymized",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
    "SV": 0,
    "UV": 0,
    "AT": 0,
}
BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "CS"}
MAX_LEN = {"SH": 16, "LO": 64, "CS": 16, "AE": 16, "ST": 1024, "LT": 10240}

_DATE8 = re.compile(r"\d{8}")
_SCRUB_PATTERNS = [
    re.compile(r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"),  # 2020-01-31
    re.compile(r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b"),  # 31.01.2020, 1/31/20
    re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),  # e-mail
    re.compile(r"\+?\d[\d ()-]{6,}\d"),  # phone numbers, long numbers
    re.compile(r"\b\d{4,}\b"),  # ids, years, MRNs
]


def dummy(vr: str) -> Any:
    """A non-empty dummy value valid for the VR (action D)."""
    if vr in BINARY_VRS:
        return b"\x00\x00"
    return DUMMY_BY_VR.get(vr, DUMMY_TEXT)


def empty(vr: str) -> Any:
    """An empty value for the VR (action Z)."""
    if vr in BINARY_VRS:
        return b""
    return None if vr not in TEXT_VRS | {"PN", "DA", "TM", "DT", "UI", "AE", "AS", "UR"} else ""


@lru_cache(maxsize=1)
def _registry_uids() -> frozenset[str]:
    return frozenset(UID_dictionary)


def is_registry_uid(value: str) -> bool:
    """A well-known UID of the DICOM registry (SOP classes, transfer syntaxes, ...)."""
    return value in _registry_uids()


class Pseudonymizer:
    """Keyed, deterministic replacements for one site secret."""

    def __init__(self, secret: bytes, shift_max_days: int = 365) -> None:
        if not secret:
            raise ValueError("the de-identification secret must not be empty")
        self._secret = secret
        self.shift_max_days = max(1, shift_max_days)
        self._uids: dict[str, str] = {}

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._secret, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()

    def uid(self, value: str) -> str:
        """``2.25.<int>`` from the keyed hash of the UID (same UID -> same result)."""
        value = value.strip("\x00 ")
        cached = self._uids.get(value)
        if cached is None:
            cached = "2.25." + str(int.from_bytes(self._digest("uid", value)[:16], "big"))
            if len(self._uids) > 100_000:
                self._uids.clear()
            self._uids[value] = cached
        return cached

    def patient_id(self, patient_key: str) -> str:
        """Pseudonymous Patient ID for ``issuer|PatientID``."""
        return "XG" + self._digest("pid", patient_key).hex()[:30].upper()

    def ae_title(self, value: str) -> str:
        return "AE" + self._digest("ae", value).hex()[:14].upper()

    def date_shift_days(self, patient_key: str) -> int:
        """A fixed backwards shift of 1..shift_max_days days for one patient."""
        raw = int.from_bytes(self._digest("dateshift", patient_key)[:8], "big")
        return 1 + raw % self.shift_max_days

    def shift(self, vr: str, value: str, days: int) -> str:
        """Shift the dates inside a DA or DT value by ``days`` back; TM is unchanged."""
        if vr == "TM" or not value:
            return value
        if vr == "DA":
            parts = [_shift_date(p.strip(), days) for p in value.split("-")]
            return "-".join(parts)
        # DT: YYYYMMDDHHMMSS.FFFFFF&ZZXX: shift the date, keep time and offset
        shifted = _shift_date(value[:8], days)
        return shifted + value[8:] if shifted else ""


def _shift_date(value: str, days: int) -> str:
    if not _DATE8.fullmatch(value):
        return ""  # a partial date (year only) cannot be shifted consistently: drop it
    try:
        day = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return ""
    return (day - timedelta(days=days)).strftime("%Y%m%d")


class Scrubber:
    """Cleans free text: removes the dataset's own identifying values and ID/date-like patterns."""

    def __init__(self, terms: list[str]) -> None:
        words = sorted({t for t in terms if len(t) >= 2}, key=len, reverse=True)
        self._terms = (
            re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE) if words else None
        )

    def clean(self, text: str) -> str:
        if self._terms is not None:
            text = self._terms.sub("*", text)
        for pattern in _SCRUB_PATTERNS:
            text = pattern.sub("*", text)
        return text


def identifying_terms(values: list[str]) -> list[str]:
    """Words of identifying values (names, IDs, addresses) to scrub from free text."""
    terms: list[str] = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        terms.append(value)
        terms.extend(w for w in re.split(r"[\^=,;\s]+", value) if len(w) >= 3)
    return terms
