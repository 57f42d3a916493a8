"""SMART on FHIR scopes (v1 ``.read`` and v2 ``.rs`` forms) and the FHIR access they grant.

A scope is ``<context>/<resource type or *>.<permissions>``:

- context ``system/`` (a backend client), ``user/`` (what the signed-in user may see: it only
  narrows a role that already reads FHIR, it grants none) or ``patient/`` (only resources in
  the compartment of the patient named by the token's ``patient`` claim; none without it);
- permissions, SMART v1 ``read`` (= ``rs``), ``write`` (= ``cud``) or ``*`` (all), or SMART v2
  letters in the order ``c r u d s`` (``rs``, ``r``, ``s``, ``cruds``). ``r`` covers read,
  vread and instance history; ``s`` search. Resources added by ``_include`` need ``r`` or ``s``.

A v2 scope with a query restriction (``patient/Observation.rs?category=...``) is not understood
and grants nothing: a scope never widens access because we read it loosely.

:class:`FhirAccess` is checked twice: on the request (type and interaction, ``deps``) and on
every resource an answer carries (``fhir_api.routes``), so no path (include, history, vread)
returns a resource the scopes do not cover.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

ALL_TYPES = "*"

Interaction = Literal["read", "search", "include"]

_SCOPE = re.compile(
    r"^(?P<context>system|user|patient)/(?P<type>\*|[A-Z][A-Za-z]+)"
    r"\.(?P<perm>read|write|\*|c?r?u?d?s?)$"
)
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


class Context(StrEnum):
    SYSTEM = "system"
    USER = "user"
    PATIENT = "patient"


@dataclass(frozen=True)
class Scope:
    """One parsed SMART resource scope."""

    context: Context
    resource_type: str  # a type name or ALL_TYPES
    permissions: frozenset[str]  # letters of "cruds"

    @property
    def reads(self) -> bool:
        return bool(self.permissions & {"r", "s"})

    @property
    def text(self) -> str:
        """The SMART v2 form (``patient/Observation.rs``)."""
        letters = "".join(c for c in "cruds" if c in self.permissions)
        return f"{self.context}/{self.resource_type}.{letters}"

    def covers(self, resource_type: str, interaction: Interaction) -> bool:
        if self.resource_type not in (ALL_TYPES, resource_type):
            return False
        if interaction == "read":
            return "r" in self.permissions
        if interaction == "search":
            return "s" in self.permissions
        return self.reads


def parse_scope(text: str) -> Scope | None:
    """The SMART resource scope ``text`` stands for; None for any other scope word."""
    match = _SCOPE.match(text)
    if match is None or not match["perm"]:
        return None
    letters = _V1.get(match["perm"], match["perm"])
    return Scope(Context(match["context"]), match["type"], frozenset(letters))


def parse_scopes(words: Iterable[str]) -> tuple[Scope, ...]:
    return tuple(s for w in words if (s := parse_scope(w)) is not None)


@dataclass(frozen=True)
class FhirAccess:
    """What FHIR resources a caller may receive. ``scopes`` None: unrestricted (the caller's
    role decides alone: an API key, a token without SMART scopes)."""

    scopes: tuple[Scope, ...] | None = None
    patient: str | None = None

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> FhirAccess:
        words = _words(claims.get("scope")) + _words(claims.get("scp"))
        scopes = parse_scopes(words)
        patient = claims.get("patient")
        return cls(
            tuple(s for s in scopes if s.reads) if scopes else None,
            str(patient) if isinstance(patient, str | int) and str(patient) else None,
        )

    def to_claims(self) -> dict[str, Any]:
        """Claims a session cookie carries to rebuild this access (:meth:`from_session`)."""
        if self.scopes is None:
            return {}
        return {"fhir_scopes": [s.text for s in self.scopes], "patient": self.patient}

    @classmethod
    def from_session(cls, claims: Mapping[str, Any]) -> FhirAccess:
        scopes = claims.get("fhir_scopes")
        if not isinstance(scopes, list):
            return cls()
        patient = claims.get("patient")
        return cls(parse_scopes(str(s) for s in scopes), str(patient) if patient else None)

    @property
    def restricted(self) -> bool:
        return self.scopes is not None

    @property
    def types(self) -> frozenset[str]:
        """The resource types some scope names (``*`` when unrestricted)."""
        if self.scopes is None:
            return frozenset({ALL_TYPES})
        return frozenset(s.resource_type for s in self._usable())

    @property
    def grants_client_role(self) -> bool:
        """Whether a system/ or patient/ read scope makes the caller an ``ehr`` client."""
        return any(s.context != Context.USER for s in self._usable())

    def allows(self, resource_type: str, interaction: Interaction) -> bool:
        """May the caller perform ``interaction`` on ``resource_type`` at all?"""
        if self.scopes is None:
            return True
        return any(s.covers(resource_type, interaction) for s in self._usable())

    def compartment_only(self, resource_type: str, interaction: Interaction) -> bool:
        """Whether only the patient compartment is allowed (no system/user scope covers it)."""
        if self.scopes is None:
            return False
        return not any(
            s.covers(resource_type, interaction)
            for s in self._usable()
            if s.context != Context.PATIENT
        )

    def permits(self, resource: Mapping[str, Any], interaction: Interaction) -> bool:
        """May the caller receive ``resource`` (a FHIR resource as JSON)?"""
        if self.scopes is None:
            return True
        rtype = str(resource.get("resourceType", ""))
        for scope in self._usable():
            if not scope.covers(rtype, interaction):
                continue
            if scope.context != Context.PATIENT or in_compartment(resource, self.patient):
                return True
        return False

    def _usable(self) -> tuple[Scope, ...]:
        """Scopes that can grant anything: patient/ scopes need a ``patient`` claim."""
        scopes = self.scopes or ()
        return tuple(s for s in scopes if s.context != Context.PATIENT or self.patient)


def in_compartment(resource: Mapping[str, Any], patient: str | None) -> bool:
    """Whether ``resource`` is ``Patient/<patient>`` or refers to it as subject / patient."""
    if not patient:
        return False
    if resource.get("resourceType") == "Patient":
        return resource.get("id") == patient
    wanted = f"Patient/{patient}"
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, Mapping) and ref.get("reference") == wanted:
            return True
    return False


def patient_reference(patient: str) -> str:
    return f"Patient/{patient}"


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []
