"""Our local code system, served: ``GET /fhir/CodeSystem/ai-findings`` and ``GET /fhir/CodeSystem``
(``url`` search). Built from :mod:`xraygate.core.vocabulary`, so it lists exactly the codes the
Observation uses. Public like ``/fhir/metadata``: it holds no patient data.
"""

from __future__ import annotations

from typing import Any

from xraygate.core.config import Settings
from xraygate.core.vocabulary import (
    AI_FINDINGS_CODESYSTEM_PATH,
    PNEUMONIA_RISK_CODE,
    PNEUMONIA_RISK_DISPLAY,
    RESULT_TERMS,
    RISK_CATEGORY_CODE,
    RISK_CATEGORY_DISPLAY,
)

CODE_SYSTEM_ID = "ai-findings"


def code_system_url(settings: Settings) -> str:
    return settings.fhir_system_base.rstrip("/") + AI_FINDINGS_CODESYSTEM_PATH


def code_system(settings: Settings) -> dict[str, Any]:
    concepts = [
        {
            "code": PNEUMONIA_RISK_CODE,
            "display": PNEUMONIA_RISK_DISPLAY,
            "definition": "AI-estimated probability of pneumonia on a chest radiograph, in %.",
        },
        {
            "code": RISK_CATEGORY_CODE,
            "display": RISK_CATEGORY_DISPLAY,
            "definition": "The triage category (high / low / indeterminate) of the risk.",
        },
    ]
    for terms in RESULT_TERMS.values():
        if not terms.snomed:
            concepts.append(
                {
                    "code": terms.concept.code,
                    "display": terms.concept.display,
                    "definition": "No image the model may read (not a chest radiograph).",
                }
            )
    return {
        "resourceType": "CodeSystem",
        "id": CODE_SYSTEM_ID,
        "url": code_system_url(settings),
        "version": "1",
        "name": "XraygateAiFindings",
        "title": "xraygate AI findings",
        "status": "active",
        "experimental": False,
        "publisher": "xraygate",
        "description": "Local codes of xraygate's AI chest X-ray triage results (LOINC has no "
        "code for an AI-estimated probability of pneumonia).",
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": concepts,
    }
