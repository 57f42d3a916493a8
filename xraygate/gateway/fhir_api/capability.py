"""The public part of the FHIR API (no token, not audited: no patient data):

- ``/fhir/metadata``: the CapabilityStatement, generated from the search table so it lists
  exactly what is served (SMART clients read it before they have a token);
- ``/fhir/CodeSystem[/ai-findings]``: our local code system (:mod:`.terminology`).

Every FHIR route answers JSON only: ``_format`` or ``Accept`` asking for XML (or anything but
JSON) gets ``406`` with an OperationOutcome (:func:`json_only`, a dependency of both routers).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

import xraygate
from xraygate.core.config import Settings
from xraygate.core.vocabulary import (
    AI_FINDINGS_CODESYSTEM_PATH,
    PNEUMONIA_RISK_CODE,
    RISK_CATEGORY_CODE,
)
from xraygate.gateway.deps import SettingsDep
from xraygate.gateway.errors import FhirRoute, NotAcceptable, NotFound, SearchError, fhir_json
from xraygate.gateway.fhir_api.params import INCLUDES, REVINCLUDES, SEARCH_PARAMS, Param
from xraygate.gateway.fhir_api.terminology import CODE_SYSTEM_ID, code_system

SP_CODESYSTEM_URL = "http://hl7.org/fhir/SearchParameter/conformance-url"
READ_INTERACTIONS = ["read", "vread", "history-instance", "search-type"]
PREFIX = "/fhir"

JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir"}


async def json_only(request: Request) -> None:
    """406 unless the client accepts JSON (``_format`` first, then ``Accept``)."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip().lower() not in JSON_FORMATS:
            raise NotAcceptable(f"_format {fmt!r} is not served: only JSON (application/fhir+json)")
        return
    accept = request.headers.get("accept", "")
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    if kinds and not any(k in JSON_FORMATS or k in ("*/*", "application/*") for k in kinds):
        raise NotAcceptable("only JSON (application/fhir+json) is served")


JSON_ONLY = Depends(json_only)
router = APIRouter(prefix=PREFIX, tags=["fhir"], route_class=FhirRoute, dependencies=[JSON_ONLY])


@router.get("/metadata", response_class=Response)
def metadata(request: Request, settings: SettingsDep) -> Response:
    """The CapabilityStatement (FHIR 4.0.1)."""
    return fhir_json(capability_statement(settings, base_url(request, settings)))


@router.get("/CodeSystem/{code_system_id}", response_class=Response)
def read_code_system(code_system_id: str, settings: SettingsDep) -> Response:
    """Our local code system."""
    if code_system_id != CODE_SYSTEM_ID:
        raise NotFound(f"CodeSystem/{code_system_id} not found")
    return fhir_json(code_system(settings))


@router.get("/CodeSystem", response_class=Response)
def search_code_system(request: Request, settings: SettingsDep) -> Response:
    """``url`` (and ``_id``) search over the one code system we publish."""
    system = code_system(settings)
    matches = [system]
    for key, value in request.query_params.multi_items():
        if key in ("_format", "_pretty", "_count"):
            continue
        if key == "url":
            matches = [m for m in matches if m["url"] == value.split("|")[0]]
        elif key == "_id":
            matches = [m for m in matches if m["id"] == value]
        else:
            raise SearchError(f"unsupported search parameter {key!r}", code="not-supported")
    base = base_url(request, settings)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(matches)}
    if matches:
        bundle["entry"] = [
            {
                "fullUrl": f"{base}/CodeSystem/{m['id']}",
                "resource": m,
                "search": {"mode": "match"},
            }
            for m in matches
        ]
    return fhir_json(bundle)


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
    resources.append(
        {
            "type": "CodeSystem",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": "url", "definition": SP_CODESYSTEM_URL, "type": "uri"},
            ],
        }
    )
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
                "304 to a matching If-None-Match. _revinclude=Provenance:target on every type. "
                "JSON only: _format=xml (or an Accept without JSON) is answered 406. "
                "/metadata and CodeSystem need no token.",
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
    out["searchRevInclude"] = sorted(REVINCLUDES)
    return out


def _param(name: str, param: Param) -> dict[str, Any]:
    out = {"name": name, "definition": param.definition, "type": param.type}
    if param.doc:
        out["documentation"] = param.doc
    return out
