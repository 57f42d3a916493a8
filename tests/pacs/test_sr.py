"""The DICOM SR of a result: TID 1500 content, identity, evidence, flags, predecessor; checked by
dciodvfy and dsrdump, and read back with highdicom."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pytest
from pydicom import dcmread
from pydicom.sr.codedict import codes

from tests.pacs.dicom_checks import dciodvfy_errors, dsrdump
from tests.results_factory import make_result
from xraygate.core.config import Settings
from xraygate.core.db import get_engine, read_session
from xraygate.core.vocabulary import DEMO_STATEMENT, DICOM_CODING_SCHEME
from xraygate.pacs import context
from xraygate.pacs.context import Predecessor
from xraygate.pacs.sr import (
    COMPREHENSIVE_SR,
    RISK,
    RISK_CATEGORY,
    build_sr,
    sr_instance_uid,
    sr_series_uid,
    to_bytes,
)


def _sr(settings: Settings, tmp_path: Path, **kw: object) -> tuple[Path, context.SrContext]:
    engine = get_engine(settings.resolved_database_url)
    made = make_result(engine, **kw)  # type: ignore[arg-type]
    with read_session(engine) as s:
        ctx = context.load(s, made.result_id)
    assert ctx is not None
    path = tmp_path / "sr.dcm"
    path.write_bytes(to_bytes(build_sr(ctx)))
    return path, ctx


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_high_risk_sr_says_it_all_and_is_valid(settings: Settings, tmp_path: Path) -> None:
    path, ctx = _sr(
        settings, tmp_path, n_instances=2, lateral=True, name="MÜLLER^JÖRG", score=0.873
    )
    assert dciodvfy_errors(path) == []
    ds = dcmread(path)
    assert ds.SOPClassUID == COMPREHENSIVE_SR
    assert ds.Modality == "SR"
    assert (ds.PreliminaryFlag, ds.CompletionFlag, ds.VerificationFlag) == (
        "PRELIMINARY",
        "COMPLETE",
        "UNVERIFIED",
    )
    # same patient and study identity as the source
    assert ds.StudyInstanceUID == ctx.result.study_instance_uid
    assert (ds.PatientID, str(ds.PatientName), ds.AccessionNumber) == (
        "MRN123",
        "MÜLLER^JÖRG",
        "ACC-1",
    )
    assert ds.IssuerOfPatientID == "HOSP"
    assert "DEMONSTRATION MODEL" in ds.SeriesDescription
    assert ds.SeriesInstanceUID == sr_series_uid(ds.StudyInstanceUID, "cxr-demo:1.0.0")
    assert ds.SOPInstanceUID == sr_instance_uid(ds.StudyInstanceUID, "cxr-demo:1.0.0", 1)
    # evidence: the two frontal images read, not the lateral
    evidence = {
        ref.ReferencedSOPInstanceUID
        for study in ds.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert len(ctx.images) == 2
    assert evidence == {i.sop_instance_uid for i in ctx.images}
    assert len(ctx.result.instance_uids) == 3  # the lateral is in the study, not in the SR
    assert "PredecessorDocumentsSequence" not in ds

    # highdicom reads the same values back
    sr = hd.sr.ComprehensiveSR.from_dataset(ds)
    parsed = hd.sr.MeasurementReport.from_sequence([sr])
    observer = parsed.get_observer_contexts()[0]
    assert observer.observer_type == codes.DCM.Device
    device = observer.observer_identifying_attributes
    assert device.manufacturer_name == "xraygate"
    assert device.model_name == "cxr-demo 1.0.0"
    groups = parsed.get_image_measurement_groups()
    assert len(groups) == 1
    group = groups[0]
    assert group.finding_type == hd.sr.CodedConcept("233604007", "SCT", "Pneumonia")
    items = [(i.name, i.value) for i in group[0].ContentSequence if i.ValueType == "TEXT"]
    assert (codes.DCM.AlgorithmName, "cxr-demo") in items
    assert (codes.DCM.AlgorithmVersion, "1.0.0") in items
    params = {v for n, v in items if n == codes.DCM.AlgorithmParameters}
    assert {f"sha256={'a' * 64}", "threshold_high=0.8", "threshold_low=0.6"} <= params
    (risk,) = group.get_measurements(name=RISK)
    assert risk.value == pytest.approx(87.3)
    assert risk.unit == codes.UCUM.Percent
    (category,) = group.get_qualitative_evaluations(name=RISK_CATEGORY)
    assert category.value == hd.sr.CodedConcept("75540009", "SCT", "High")
    assert RISK.scheme_designator == DICOM_CODING_SCHEME
    comments = [v for n, v in items if n == codes.DCM.Comment]
    assert any(DEMO_STATEMENT in c for c in comments)
    assert "Thresholds: high > 80%, low < 60%." in comments

    tree = dsrdump(path)
    for line in (
        'CONTAINER:(126000,DCM,"Imaging Measurement Report")',
        'CODE:(121005,DCM,"Observer Type")=(121007,DCM,"Device")',
        'CODE:(121058,DCM,"Procedure reported")=(399208008,SCT,"Plain chest X-ray")',
        'CODE:(121071,DCM,"Finding")=(233604007,SCT,"Pneumonia")',
        '(pneumonia-risk,99XRAYGATE,"Pneumonia risk (AI estimated probability of pneumonia)")="87.3" (%,UCUM,"Percent")',  # noqa: E501
        '=(75540009,SCT,"High")',
    ):
        assert line in tree, tree


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_low_result_uses_the_snomed_low_and_the_non_demo_series(
    settings: Settings, tmp_path: Path
) -> None:
    path, _ = _sr(settings, tmp_path, score=0.12, category="low", demo=False)
    assert dciodvfy_errors(path) == []
    ds = dcmread(path)
    assert "DEMONSTRATION" not in ds.SeriesDescription
    assert ds.ContentQualification == "PRODUCT"
    assert '=(62482003,SCT,"Low")' in dsrdump(path)
    assert DEMO_STATEMENT not in dsrdump(path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_new_revision_references_its_predecessor(settings: Settings, tmp_path: Path) -> None:
    engine = get_engine(settings.resolved_database_url)
    made = make_result(engine)
    with read_session(engine) as s:
        ctx = context.load(s, made.result_id)
    assert ctx is not None
    first = sr_instance_uid(made.study_uid, "cxr-demo:1.0.0", 1)
    ctx.result.revision = 2
    later = context.SrContext(ctx.result, ctx.patient, ctx.study, ctx.images, Predecessor(first, 1))
    ds = build_sr(later)
    path = tmp_path / "sr2.dcm"
    path.write_bytes(to_bytes(ds))
    assert dciodvfy_errors(path) == []
    assert ds.SOPInstanceUID == sr_instance_uid(made.study_uid, "cxr-demo:1.0.0", 2)
    (study,) = ds.PredecessorDocumentsSequence
    (series,) = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == ds.SeriesInstanceUID  # same SR series
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first
