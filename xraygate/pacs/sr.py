"""The DICOM SR of a study result: Comprehensive SR, TID 1500 Measurement Report (IHE AI Results).

The content tree (drawn in the README's "PACS" section)::

    CONTAINER Imaging Measurement Report (DCM 126000)
      HAS CONCEPT MOD  Language of Content = English (United States)
      HAS OBS CONTEXT  Observer Type = Device; Device Observer UID / Name / Manufacturer / Model
      HAS CONCEPT MOD  Procedure reported = Plain chest X-ray (SCT 399208008)
      CONTAINER Imaging Measurements
        CONTAINER Measurement Group
          Tracking Identifier / Tracking Unique Identifier
          Finding = Pneumonia (SCT 233604007)
          Algorithm Name / Version / Parameters (sha256, thresholds)
          NUM Pneumonia risk = <score> % (UCUM)              -- only with a score
          CODE Pneumonia risk category = High|Low|Indeterminate (SCT) | Not applicable (ours)
          TEXT Comment = the reason without a score (out of distribution)
          TEXT Comment = the thresholds
          TEXT Comment = the AI statement (and the demonstration-model warning)

The SR is PRELIMINARY, COMPLETE and UNVERIFIED (AI output is never final, and nobody signed it);
its patient and study identity are the source study's; its evidence are the images the model read;
a new revision of the result gets a new SR (same series) whose Predecessor Documents Sequence
names the SR of the revision before. UIDs are derived from the result (study, model, revision), so
a rebuilt SR has the same identity.
"""

from __future__ import annotations

import uuid
from io import BytesIO

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

import xraygate
from xraygate.core.vocabulary import (
    CHEST_XRAY_SNOMED,
    DICOM_CODING_SCHEME,
    PNEUMONIA_RISK_CODE,
    PNEUMONIA_RISK_DISPLAY,
    PNEUMONIA_SNOMED,
    RISK_CATEGORY_CODE,
    RISK_CATEGORY_DISPLAY,
    Term,
    statement,
    terms_for,
    thresholds_text,
)
from xraygate.pacs.context import SrContext

MANUFACTURER = "xraygate"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SR_SERIES_NUMBER = 9901
SCT = "SCT"


def _code(term: Term, scheme: str) -> Code:
    return Code(term.code, scheme, term.display)


RISK = Code(PNEUMONIA_RISK_CODE, DICOM_CODING_SCHEME, PNEUMONIA_RISK_DISPLAY)
RISK_CATEGORY = Code(RISK_CATEGORY_CODE, DICOM_CODING_SCHEME, RISK_CATEGORY_DISPLAY)
PNEUMONIA = _code(PNEUMONIA_SNOMED, SCT)
CHEST_XRAY = _code(CHEST_XRAY_SNOMED, SCT)
ENGLISH = hd.sr.CodedConcept("en-US", "RFC5646", "English (United States)")
OUR_SCHEME = hd.coding_schemes.CodingSchemeIdentificationItem(
    designator=DICOM_CODING_SCHEME,
    name="xraygate AI findings",
    responsible_organization=MANUFACTURER,
)


def category_code(category: str) -> Code:
    """The category as a code: SNOMED CT where RESULT_TERMS says so, else our coding scheme."""
    terms = terms_for(category)
    return _code(terms.concept, SCT if terms.snomed else DICOM_CODING_SCHEME)


# --- identities derived from the result ---------------------------------------------------------


def _uid(*parts: object) -> str:
    """A ``2.25.`` UID from a name-based (version 5) UUID of ``parts``: the same parts, the same
    UID, on every host and every retry."""
    name = "|".join(["xraygate-pacs", *map(str, parts)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


def sr_series_uid(study_uid: str, model_version: str) -> str:
    """One SR series per study and model version: every revision's SR goes there."""
    return _uid("sr-series", study_uid, model_version)


def sr_instance_uid(study_uid: str, model_version: str, revision: int) -> str:
    return _uid("sr", study_uid, model_version, revision)


def device_uid(model_sha256: str) -> str:
    """The observer device: one UID per model artifact."""
    return _uid("device", model_sha256)


def series_description(demo_model: bool) -> str:
    text = "AI pneumonia triage (preliminary)"
    return f"{text} - DEMONSTRATION MODEL" if demo_model else text


# --- the SR ------------------------------------------------------------------------------------


def _evidence(ctx: SrContext) -> list[Dataset]:
    """One header-only dataset per image read: what highdicom needs to reference it and to copy
    the patient and study identity from (the index holds the source's values)."""
    out = []
    for image in ctx.images:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"  # the index stores text as Unicode
        ds.PatientID = ctx.patient.patient_id
        ds.IssuerOfPatientID = ctx.patient.issuer
        ds.PatientName = ctx.patient.name
        ds.PatientBirthDate = ctx.patient.birth_date
        ds.PatientSex = ctx.patient.sex if ctx.patient.sex in ("M", "F", "O") else ""
        ds.StudyInstanceUID = ctx.result.study_instance_uid
        ds.StudyID = ""
        ds.StudyDate = ctx.study.study_date
        ds.StudyTime = ctx.study.study_time
        ds.AccessionNumber = ctx.study.accession_number
        ds.ReferringPhysicianName = ctx.study.referring_physician
        ds.SeriesInstanceUID = image.series_instance_uid
        ds.SOPClassUID = image.sop_class_uid
        ds.SOPInstanceUID = image.sop_instance_uid
        out.append(ds)
    return out


def _algorithm(ctx: SrContext) -> hd.sr.AlgorithmIdentification:
    r = ctx.result
    name, _, version = r.model_version.partition(":")
    params = [f"sha256={r.model_sha256}"]
    for key in ("high", "low"):
        if r.thresholds.get(key) is not None:
            params.append(f"threshold_{key}={float(r.thresholds[key]):g}")
    return hd.sr.AlgorithmIdentification(
        name=name, version=version or "unknown", parameters=params, manufacturer=MANUFACTURER
    )


def _comment(text: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=codes.DCM.Comment,
        value=text[:1000],
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def _group(ctx: SrContext) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    r = ctx.result
    algorithm = _algorithm(ctx)
    measurements = []
    if r.score is not None:
        measurements.append(
            hd.sr.Measurement(
                name=RISK, value=round(float(r.score) * 100, 1), unit=codes.UCUM.Percent
            )
        )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_uid("tracking", r.study_instance_uid, r.model_version),
            identifier="AI pneumonia risk",
        ),
        finding_type=PNEUMONIA,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=RISK_CATEGORY, value=category_code(r.category))
        ],
    )
    container = group[0]
    if r.score is None and r.reason:
        container.ContentSequence.append(_comment(f"No score: {r.reason}"))
    if text := thresholds_text(r.thresholds):
        container.ContentSequence.append(_comment(text))
    container.ContentSequence.append(_comment(statement(r.demo_model)))
    return group


def build_sr(ctx: SrContext, *, institution: str | None = None) -> hd.sr.ComprehensiveSR:
    """The SR of ``ctx``'s result revision (ValueError when no image was read: nothing to cite)."""
    r = ctx.result
    if not ctx.images:
        raise ValueError(f"result {r.id} read no image: no SR evidence")
    name, _, version = r.model_version.partition(":")
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(r.model_sha256),
            name=f"{MANUFACTURER} {name}",
            manufacturer_name=MANUFACTURER,
            model_name=f"{name} {version}".strip(),
            serial_number=r.model_sha256[:16],
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CHEST_XRAY,
        imaging_measurements=[_group(ctx)],
        title=codes.DCM.ImagingMeasurementReport,
        language_of_content_item_and_descendants=hd.sr.LanguageOfContentItemAndDescendants(ENGLISH),
    )
    previous = None
    if ctx.predecessor is not None:
        prev = Dataset()
        prev.SOPClassUID = COMPREHENSIVE_SR
        prev.SOPInstanceUID = ctx.predecessor.sop_instance_uid
        prev.StudyInstanceUID = r.study_instance_uid
        prev.SeriesInstanceUID = sr_series_uid(r.study_instance_uid, r.model_version)
        previous = [prev]
    sr = hd.sr.ComprehensiveSR(
        evidence=_evidence(ctx),
        content=report[0],
        series_instance_uid=sr_series_uid(r.study_instance_uid, r.model_version),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sr_instance_uid(r.study_instance_uid, r.model_version, r.revision),
        instance_number=r.revision,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        institution_name=institution,
        previous_versions=previous,
        series_description=series_description(r.demo_model),
        software_versions=f"xraygate {xraygate.__version__}",
        manufacturer_model_name="xraygate pneumonia triage",
        # a demonstration model's output is not a product's
        content_qualification="RESEARCH" if r.demo_model else "PRODUCT",
        coding_schemes=[OUR_SCHEME],
    )
    return sr


def to_bytes(ds: Dataset) -> bytes:
    """The DICOM Part 10 file of ``ds`` (preamble, file meta, explicit VR little endian)."""
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
