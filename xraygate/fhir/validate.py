"""Validate an emitted resource with the fhir.resources R4B models (R4-compatible for ours).

fhir.resources 8 has no R4 (4.0.1) module; R4B (4.3.0) is the same for the elements we use, and
the tests also validate every emitted resource against the official R4 JSON schema.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from xraygate.core.errors import PermanentDelivery


def validate_resource(resource: dict[str, Any]) -> None:
    """Raise :class:`PermanentDelivery` if ``resource`` is not a valid FHIR resource."""
    resource_type = str(resource.get("resourceType", ""))
    try:
        model = get_fhir_model_class(resource_type)
        model.model_validate(resource)
    except (KeyError, ValueError, ValidationError) as exc:
        raise PermanentDelivery(f"{resource_type} failed FHIR validation: {exc}") from exc
