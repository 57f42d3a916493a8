"""``/fhir/metadata``: the CapabilityStatement, generated from the search table so it lists exactly
what is served. Not audited: it holds no patient data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

import xraygate
from xraygate.core.config import Settings
from xraygate.core.vocabulary import (
    AI_FINDINGS_CODESYSTEM_PATH,
    PNEUMONIA_RISK_CODE,
    RISK_CATEGORY_CODE,
)
from xraygate.gateway.deps import SettingsDep
from xraygate.gateway.errors import FhirRoute, fhir_json
from xraygate.gateway.fhir_api.params import INCLUDES, SEARCH_PARAMS, Param

READ_INTERACTIONS = ["read", "vread", "history-instance", "search-type"]
PREFIX = "/fhir"

router = APIRouter(prefix=PREFIX, tags=["fhir"], route_class=FhirRoute)


@router.get("/metadata", response_class=Response)
def metadata(request: Request, settings: SettingsDep) -> Response:
    """The CapabilityStatement (FHIR 4.0.1)."""
    return fhir_json(capability_statement(settings, base_url(request, settings)))


def base_url(request: Request, settings: Settings) -> str:
    """The FHIR base the links point to: ``XRAYGATE_FHIR_BASE_URL``, else this server's."""
    if settings.fhir_base_url:
        return settings.fhir_base_url.rstrip("/")
    return str(request.base_url).rstrip("/") + PREFIX


def code_system_doc(settings: Settings) -> str:
    system = settings.fhir_system_base.rstrip("/") + AI_FINDINGS_CODESYSTEM_PATH
    return (
        f"Observation.code uses our own code system {system}: code '{PNEUMONIA_RISK_CODE}' is "
        "the AI-estimated probability of pneumonia on a chest radiograph, valueQuantity in % "
        "(UCUM '%'); LOINC has no code for it. Component '"
        f"{RISK_CATEGORY_CODE}' carries the triage category as SNOMED CT 75540009 High, "
        "62482003 Low or 82334004 Indeterminate (or 'not-applicable' in our system), mirrored "
        "in Observation.interpretation (v3 H / N / IND). The model is Observation.device. "
        "Reports are AI-generated and 'preliminary' until a clinician's finding makes them "
        "'final' (later changes: 'amended', 'corrected'). "
        "A Provenance per report version records the model version, its sha256, the thresholds "
        "and the SOP Instance UIDs read."
    )


def capability_statement(settings: Settings, base_url: str) -> dict[str, Any]:
    resources = [_resource(rtype, params) for rtype, params in SEARCH_PARAMS.items()]
    return {
        "resourceType": "CapabilityStatement",
        "id": "xraygate",
        "status": "active",
        "date": "2024-05-14",
        "publisher": "xraygate",
        "kind": "instance",
        "software": {"name": "xraygate", "version": xraygate.__version__},
        "implementation": {
            "description": "xraygate AI chest X-ray triage results (read and search only)",
            "url": base_url,
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": code_system_doc(settings)
                + " Search: comma = OR, repeated parameter = AND; _count (max 1000), "
                "_offset paging with next/previous links, _sort=date|-date|_lastUpdated|"
                "-_lastUpdated|_id. Unknown parameters are refused (400) unless the request "
                "sends 'Prefer: handling=lenient'. Reads answer ETag W/\"<versionId>\" and "
                "304 to a matching If-None-Match.",
                "security": {
                    "cors": False,
                    "description": "Authentication is enforced by the xraygate gateway.",
                },
                "resource": resources,
            }
        ],
    }


def _resource(rtype: str, params: dict[str, Param]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": rtype,
        "interaction": [{"code": code} for code in READ_INTERACTIONS],
        "versioning": "versioned",
        "readHistory": True,
        "updateCreate": False,
        "conditionalRead": "not-match",
        "searchParam": [_param(name, p) for name, p in params.items()],
    }
    includes = sorted(name for name, (source, _) in INCLUDES.items() if source == rtype)
    if includes:
        out["searchInclude"] = includes
    return out


def _param(name: str, param: Param) -> dict[str, Any]:
    out = {"name": name, "definition": param.definition, "type": param.type}
    if param.doc:
        out["documentation"] = param.doc
    return out
