"""Who is calling: the :class:`Role` enum, the :class:`Principal`, and the mapping from a token's
claims to roles and readable FHIR resource types."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

ALL_TYPES = "*"
_SMART_READ = re.compile(r"^(?:system|user|patient)/(\*|[A-Z][A-Za-z]+)\.(?:read|rs|r|\*)$")


class Role(StrEnum):
    ADMIN = "admin"  # models, settings, dead letters, audit trail
    CLINICIAN = "clinician"  # worklist, studies, images, feedback
    EHR = "ehr"  # FHIR read, possibly limited to some resource types
    MODALITY = "modality"  # DICOMweb STOW-RS: a modality or router storing images

    @classmethod
    def parse(cls, words: Iterable[str]) -> frozenset[Role]:
        """The roles among ``words`` (other words are ignored)."""
        known = {role.value for role in cls}
        return frozenset(cls(word) for word in words if word in known)


@dataclass(frozen=True)
class Principal:
    """Who is calling, with which roles."""

    subject: str
    roles: frozenset[Role]
    method: str  # jwt | api-key | session
    fhir_types: frozenset[str] = frozenset({ALL_TYPES})
    csrf: str = ""
    expires_at: float | None = None

    def has(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))

    def may_read_fhir(self, resource_type: str | None) -> bool:
        if Role.ADMIN in self.roles or ALL_TYPES in self.fhir_types or resource_type is None:
            return True
        return resource_type in self.fhir_types


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


def roles_from_claims(claims: Mapping[str, Any]) -> tuple[frozenset[Role], frozenset[str]]:
    """Roles and the FHIR resource types readable, from ``roles`` and ``scope``/``scp``: a role's
    name, ``xraygate/<role>``, or SMART-style FHIR read scopes (``system/DiagnosticReport.read``,
    ``system/*.read``, ``user/*.read``, SMART v2 ``.rs``), which grant ``ehr`` limited to the
    resource types they name."""
    roles: set[Role] = set()
    fhir_types: set[str] = set()
    explicit_ehr = False
    for word in _words(claims.get("roles")):
        roles |= Role.parse([word])
        explicit_ehr |= word == Role.EHR
    for scope in _words(claims.get("scope")) + _words(claims.get("scp")):
        name = scope.removeprefix("xraygate/")
        if named := Role.parse([name]):
            roles |= named
            explicit_ehr |= name == Role.EHR
        elif match := _SMART_READ.match(scope):
            roles.add(Role.EHR)
            fhir_types.add(match.group(1))
    if explicit_ehr or not fhir_types:
        fhir_types = {ALL_TYPES}
    return frozenset(roles), frozenset(fhir_types)
