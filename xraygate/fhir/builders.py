"""FHIR R4 resources for one study result, as plain JSON dicts (validated in :mod:`.validate`).

Graph (see ``shared/reference/fhir-imaging-ai-results.md``)::

    DiagnosticReport --result--> Observation --derivedFrom--> ImagingStudy
          |  \\--imagingStudy--> ImagingStudy            \\--device--> Device (model+version)
          \\--subject--> Patient          Provenance --target--> DiagnosticReport, Observation

The risk is ``Observation.valueQuantity`` in percent (UCUM ``%``), coded with our own code system
``<fhir_system_base>/CodeSystem/ai-findings#pneumonia-risk`` (LOINC has no such code); the
category (high / indeterminate / low) is a component and the interpretation. Status: AI output is
``preliminary`` until a clinician gives a finding (:mod:`xraygate.core.result_status`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from xraygate.core.models.deid import Finding
from xraygate.core.models.delivery import DICOM_UID_SYSTEM
from xraygate.core.vocabulary import (
    AI_FINDINGS_CODESYSTEM_PATH,
    DEMO_STATEMENT,
    LATE_IMAGES_NOTE,
    PNEUMONIA_RISK_CODE,
    PNEUMONIA_RISK_DISPLAY,
    REPORT_LOINC,
    RISK_CATEGORY_CODE,
    RISK_CATEGORY_DISPLAY,
    STATUS_TERMS,
    CategoryTerms,
    category_of,
    data_absent_reason,
    statement,
    terms_for,
    thresholds_text,
)
from xraygate.fhir.context import ResultContext
from xraygate.fhir.identity import dicom_values

Json = dict[str, Any]

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

SEX = {"M": "male", "F": "female", "O": "other"}


def ai_code_system(ctx: ResultContext) -> str:
    return ctx.system_base + AI_FINDINGS_CODESYSTEM_PATH


def fhir_datetime(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def ref(resource_type: str, resource_id: str) -> Json:
    return {"reference": f"{resource_type}/{resource_id}"}


def accession_identifier(ctx: ResultContext) -> Json | None:
    values = dicom_values(ctx.study.accession_number)
    if not values:
        return None
    return {
        "type": {"coding": [{"system": V2_0203, "code": "ACSN", "display": "Accession ID"}]},
        "system": ctx.systems.accession_system(),
        "value": values[0],
    }


def patient_identifiers(ctx: ResultContext) -> list[Json]:
    """One MR identifier per PatientID value, in the system of the patient's issuer."""
    p = ctx.patient
    system = ctx.systems.patient_system(p)
    out: list[Json] = []
    for value in dicom_values(p.patient_id):
        ident: Json = {
            "use": "usual",
            "type": {
                "coding": [{"system": V2_0203, "code": "MR", "display": "Medical record number"}]
            },
            "system": system,
            "value": value,
        }
        if p.issuer:
            ident["assigner"] = {"display": p.issuer}
        out.append(ident)
    return out


# --- the resources ---------------------------------------------------------------------------


def build_patient(ctx: ResultContext) -> Json:
    """Only what DICOM carries: PatientID + issuer, name, birth date, sex."""
    p = ctx.patient
    out: Json = {"resourceType": "Patient", "id": ctx.patient_id}
    identifiers = patient_identifiers(ctx)
    if identifiers:
        out["identifier"] = identifiers
    names = [n for n in (_human_name(v) for v in p.name.split("\\")) if n]
    if names:
        out["name"] = names
    if p.sex.upper() in SEX:
        out["gender"] = SEX[p.sex.upper()]
    if len(p.birth_date) == 8 and p.birth_date.isdigit():
        out["birthDate"] = f"{p.birth_date[:4]}-{p.birth_date[4:6]}-{p.birth_date[6:]}"
    return out


def _human_name(pn: str) -> Json | None:
    alphabetic = pn.split("=")[0]
    parts = [part.strip() for part in alphabetic.split("^")]
    family = parts[0] if parts else ""
    given = [g for g in (parts[1:3] if len(parts) > 1 else []) if g]
    if not family and not given:
        return None
    name: Json = {"text": " ".join([*given, family]).strip()}
    if family:
        name["family"] = family
    if given:
        name["given"] = given
    return name


def build_imaging_study(ctx: ResultContext) -> Json:
    identifiers: list[Json] = [
        {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{ctx.study.study_instance_uid}"}
    ]
    acsn = accession_identifier(ctx)
    if acsn:
        identifiers.append(acsn)
    series_out = [_series(rows.series.series_instance_uid, rows) for rows in ctx.series]
    modalities = sorted({s["modality"]["code"] for s in series_out})
    out: Json = {
        "resourceType": "ImagingStudy",
        "id": ctx.imaging_study_id,
        "identifier": identifiers,
        "status": "available",
        "modality": [{"system": DCM, "code": m} for m in modalities],
        "subject": ref("Patient", ctx.patient_id),
        "numberOfSeries": len(series_out),
        "numberOfInstances": sum(len(rows.instances) for rows in ctx.series),
    }
    started = ctx.study_started()
    if started:
        out["started"] = fhir_datetime(started)
    if ctx.study.description:
        out["description"] = ctx.study.description
    if series_out:
        out["series"] = series_out
    return out


def _series(uid: str, rows: Any) -> Json:
    s = rows.series
    out: Json = {"uid": uid, "modality": {"system": DCM, "code": s.modality or "OT"}}
    if s.series_number is not None:
        out["number"] = max(0, s.series_number)
    if s.description:
        out["description"] = s.description
    out["numberOfInstances"] = len(rows.instances)
    instances = []
    for inst in rows.instances:
        item: Json = {
            "uid": inst.sop_instance_uid,
            "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{inst.sop_class_uid}"},
        }
        if inst.instance_number is not None:
            item["number"] = max(0, inst.instance_number)
        instances.append(item)
    if instances:
        out["instance"] = instances
    return out


def build_device(ctx: ResultContext) -> Json:
    r = ctx.result
    out: Json = {
        "resourceType": "Device",
        "id": ctx.device_id,
        "identifier": [
            {"system": f"{ctx.system_base}/model", "value": r.model_version},
            {"system": f"{ctx.system_base}/model-sha256", "value": r.model_sha256},
        ],
        "status": "active",
        "deviceName": [
            {"name": ctx.model_name, "type": "model-name"},
            {"name": r.model_version, "type": "user-friendly-name"},
        ],
        "modelNumber": ctx.model_name,
        "type": {"text": "AI image analysis software (chest X-ray pneumonia risk)"},
        "version": [{"type": {"text": "model version"}, "value": ctx.model_version_only}],
    }
    if r.demo_model:
        out["note"] = [{"text": DEMO_STATEMENT}]
    return out


def _category_concept(ctx: ResultContext, terms: CategoryTerms) -> Json:
    system = SNOMED if terms.snomed else ai_code_system(ctx)
    coding = {"system": system, "code": terms.concept.code, "display": terms.concept.display}
    return {"coding": [coding], "text": category_of(ctx.result.category).value}


def build_observation(ctx: ResultContext, issued: datetime) -> Json:
    r = ctx.result
    terms = terms_for(r.category)
    note = " ".join(x for x in (thresholds_text(r.thresholds), statement(r.demo_model)) if x)
    out: Json = {
        "resourceType": "Observation",
        "id": ctx.observation_id,
        "identifier": [observation_identifier(ctx)],
        "status": STATUS_TERMS[ctx.state.status].fhir,
        "category": [
            {"coding": [{"system": OBS_CATEGORY, "code": "imaging", "display": "Imaging"}]}
        ],
        "code": {
            "coding": [
                {
                    "system": ai_code_system(ctx),
                    "code": PNEUMONIA_RISK_CODE,
                    "display": PNEUMONIA_RISK_DISPLAY,
                }
            ],
            "text": "AI-estimated probability of pneumonia on chest radiograph",
        },
        "subject": ref("Patient", ctx.patient_id),
        "effectiveDateTime": fhir_datetime(ctx.effective()),
        "issued": fhir_datetime(issued),
        "bodySite": {
            "coding": [{"system": SNOMED, "code": "51185008", "display": "Thoracic structure"}]
        },
        "method": {"text": f"Deep-learning classifier {r.model_version}"},
        "device": ref("Device", ctx.device_id),
        "derivedFrom": [ref("ImagingStudy", ctx.imaging_study_id)],
        "note": [{"text": note}],
        "component": [
            {
                "code": {
                    "coding": [
                        {
                            "system": ai_code_system(ctx),
                            "code": RISK_CATEGORY_CODE,
                            "display": RISK_CATEGORY_DISPLAY,
                        }
                    ]
                },
                "valueCodeableConcept": _category_concept(ctx, terms),
            }
        ],
    }
    if r.score is not None:
        out["valueQuantity"] = {
            "value": round(r.score * 100, 1),
            "unit": "%",
            "system": UCUM,
            "code": "%",
        }
    else:  # not applicable, or no image the model knows (out of distribution): no score
        absent = data_absent_reason(r.category)
        out["dataAbsentReason"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": absent.code,
                    "display": absent.display,
                }
            ],
            "text": r.reason or "no image the model may read",
        }
    if terms.fhir_interpretation is not None:
        code, display = terms.fhir_interpretation.code, terms.fhir_interpretation.display
        out["interpretation"] = [
            {"coding": [{"system": INTERPRETATION, "code": code, "display": display}]}
        ]
    return out


def conclusion(ctx: ResultContext) -> str:
    r = ctx.result
    if r.score is None:
        head = f"AI pneumonia risk not assessed ({r.reason or 'no readable chest image'})."
    else:
        head = f"AI pneumonia risk {r.score * 100:.0f}% ({category_of(r.category).value})."
    review = REVIEW_TEXT.get(ctx.state.finding) if ctx.state.finding else None
    late = LATE_IMAGES_NOTE if ctx.late_images else ""
    tail = "".join(f" {text}" for text in (late, review) if text)
    return f"{head} Model {r.model_version}. {statement(r.demo_model)}{tail}"


#: What the conclusion says of the clinician's finding once it counts (status final and later).
REVIEW_TEXT = {
    Finding.CONFIRM: "Clinician review: pneumonia confirmed.",
    Finding.REJECT: "Clinician review: no pneumonia.",
}


def observation_identifier(ctx: ResultContext) -> Json:
    """Our business identifier of the study's risk Observation (one per study and model)."""
    return {
        "system": f"{ctx.system_base}/observation",
        "value": f"{ctx.study.study_instance_uid}:{ctx.model_name}",
    }


def report_identifier(ctx: ResultContext) -> Json:
    return {
        "system": f"{ctx.system_base}/report",
        "value": f"{ctx.study.study_instance_uid}:{ctx.model_name}",
    }


def build_report(ctx: ResultContext, issued: datetime) -> Json:
    identifiers: list[Json] = [report_identifier(ctx)]
    acsn = accession_identifier(ctx)
    if acsn:
        identifiers.append(acsn)
    out: Json = {
        "resourceType": "DiagnosticReport",
        "id": ctx.report_id,
        "identifier": identifiers,
        "status": STATUS_TERMS[ctx.state.status].fhir,
        "category": [
            {
                "coding": [
                    {"system": V2_0074, "code": "RAD", "display": "Radiology"},
                    {"system": LOINC, "code": "LP29684-5", "display": "Radiology"},
                ]
            }
        ],
        "code": {
            "coding": [
                {"system": LOINC, "code": REPORT_LOINC.code, "display": REPORT_LOINC.display}
            ],
            "text": "AI triage of chest radiograph (pneumonia risk)",
        },
        "subject": ref("Patient", ctx.patient_id),
        "effectiveDateTime": fhir_datetime(ctx.effective()),
        "issued": fhir_datetime(issued),
        "result": [ref("Observation", ctx.observation_id)],
        "imagingStudy": [ref("ImagingStudy", ctx.imaging_study_id)],
        "conclusion": conclusion(ctx),
    }
    if acsn:
        out["basedOn"] = [{"type": "ServiceRequest", "identifier": acsn}]
    return out


def build_provenance(ctx: ResultContext, report_version: int, recorded: datetime) -> Json:
    """Who produced the report version (the model), from which images, with which thresholds."""
    r = ctx.result
    base = ctx.system_base
    entities: list[Json] = [{"role": "source", "what": ref("ImagingStudy", ctx.imaging_study_id)}]
    for uid in r.instance_uids:
        entities.append(
            {
                "role": "source",
                "what": {
                    "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{uid}"},
                    "display": "SOP Instance read by the model",
                },
            }
        )
    ext: list[Json] = [
        {"url": "model-version", "valueString": r.model_version},
        {"url": "model-sha256", "valueString": r.model_sha256},
    ]
    for key in ("high", "low"):
        if key in r.thresholds:
            ext.append({"url": f"threshold-{key}", "valueDecimal": float(r.thresholds[key])})
    return {
        "resourceType": "Provenance",
        "id": ctx.provenance_id(report_version),
        "extension": [
            {"url": f"{base}/StructureDefinition/ai-result-provenance", "extension": ext}
        ],
        "target": [
            {"reference": f"DiagnosticReport/{ctx.report_id}/_history/{report_version}"},
            ref("Observation", ctx.observation_id),
        ],
        "recorded": fhir_datetime(recorded),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "CREATE" if report_version == 1 else "UPDATE",
                }
            ]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "performer",
                            "display": "Performer",
                        }
                    ]
                },
                "who": {**ref("Device", ctx.device_id), "display": r.model_version},
            }
        ],
        "entity": entities,
    }


def build_all(ctx: ResultContext) -> list[Json]:
    """Everything except the Provenance (which needs the stored report version)."""
    issued = ctx.result.updated_at
    return [
        build_patient(ctx),
        build_imaging_study(ctx),
        build_device(ctx),
        build_observation(ctx, issued),
        build_report(ctx, issued),
    ]
