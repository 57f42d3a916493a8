"""Who is calling: the :class:`Role` enum, the :class:`Principal`, and the mapping from a token's
claims to roles and FHIR access (SMART scopes, :mod:`.scopes`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from xraygate.gateway.auth.scopes import ALL_TYPES, FhirAccess, Interaction, parse_scope


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
    fhir: FhirAccess = field(default_factory=FhirAccess)
    csrf: str = ""
    expires_at: float | None = None
    session_id: str | None = None  # browser sessions: the server-side id logout revokes

    @property
    def fhir_types(self) -> frozenset[str]:
        """The FHIR resource types the caller's scopes name (``*``: no scope restriction)."""
        return self.fhir.types

    def has(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))

    def may_read_fhir(self, resource_type: str | None, interaction: Interaction = "read") -> bool:
        """The type-level check; every resource returned is checked too (``FhirAccess.permits``)."""
        if resource_type is None:
            return True
        return self.fhir.allows(resource_type, interaction)


__all__ = ["ALL_TYPES", "Principal", "Role", "roles_from_claims"]


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


def roles_from_claims(claims: Mapping[str, Any]) -> tuple[frozenset[Role], FhirAccess]:
    """Roles and FHIR access, from ``roles`` and ``scope``/``scp``: a role's name,
    ``xraygate/<role>``, or SMART resource scopes (:mod:`.scopes`). ``system/`` and ``patient/``
    read scopes grant ``ehr`` (a client application); ``user/`` scopes grant no role, they
    narrow the FHIR access of the user's own role. When a token carries SMART resource scopes,
    they bound what it reads whatever its roles."""
    roles: set[Role] = set()
    for word in _words(claims.get("roles")):
        roles |= Role.parse([word])
    for scope in _words(claims.get("scope")) + _words(claims.get("scp")):
        if parse_scope(scope) is None:
            roles |= Role.parse([scope.removeprefix("xraygate/")])
    access = FhirAccess.from_claims(claims)
    if access.grants_client_role:
        roles.add(Role.EHR)
    return frozenset(roles), access
