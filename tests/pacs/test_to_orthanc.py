"""The PACS channel end to end, with Orthanc as the PACS: RG1 arrives, is read (out of the demo
model's distribution: indeterminate, no score), and Orthanc holds the SR and the key image in the
same study; PACS down then up: each SR arrives once, in order."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import highdicom as hd
import pytest
from pydicom import dcmread
from pydicom.sr.codedict import codes

from tests.dicom_scp.conftest import sample
from tests.inference.conftest import Pipeline
from tests.orthanc import Orthanc
from tests.pacs.conftest import pacs_env
from tests.pacs.dicom_checks import dciodvfy_errors, dsrdump
from tests.results_factory import enqueue_emit, make_result, rescore, run_until
from xraygate.core.config import Settings
from xraygate.core.db import read_session
from xraygate.core.jobs import JobKind
from xraygate.core.models import OutboxState
from xraygate.gateway.views.studies import study_view
from xraygate.pacs.sr import RISK, RISK_CATEGORY, sr_instance_uid
from xraygate.pacs.worker import make_handlers
from xraygate.service import job_handlers

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rg1_arrives_and_orthanc_holds_the_sr_and_key_image_in_the_study(
    settings: Settings, orthanc: Orthanc, tmp_path: Path
) -> None:
    orthanc.start()
    # the modality stored the study in the PACS too (as it does in a hospital)
    orthanc.upload(sample("RG1_UNCR.dcm").read_bytes())
    env = pacs_env(settings, orthanc, pacs_key_image=True)
    pipeline = Pipeline(env.settings, tmp_path)
    pipeline.queue = env.queue
    study_uid = pipeline.ingest(sample("RG1_UNCR.dcm"))
    source = dcmread(sample("RG1_UNCR.dcm"), stop_before_pixels=True)
    handlers = job_handlers(env.settings, env.store, env.queue)
    run_until(env.queue, handlers, env.all_final, timeout=180)  # type: ignore[arg-type]

    (sr_msg, key_msg) = env.outbox()
    assert [m.state for m in (sr_msg, key_msg)] == [OutboxState.DELIVERED] * 2
    # the PACS channel's delivery state shows where the other channels' do (the study page/API)
    with read_session(env.queue.engine) as session:
        view = study_view(session, study_uid)
    assert view is not None
    assert [(d.channel, d.state) for d in view.deliveries if d.channel == "pacs"] == [
        ("pacs", "delivered")
    ] * 2
    found = orthanc.find_instances(StudyInstanceUID=study_uid)
    by_uid = {i["MainDicomTags"]["SOPInstanceUID"]: i for i in found}
    assert set(by_uid) == {source.SOPInstanceUID, sr_msg.control_id, key_msg.control_id}
    studies = {orthanc.study_of(i["ID"])["ID"] for i in found}
    assert len(studies) == 1  # one study in Orthanc: the source's (same patient, same study)
    assert orthanc.get("/statistics")["CountPatients"] == 1

    sr_path, key_path = tmp_path / "sr.dcm", tmp_path / "key.dcm"
    sr_path.write_bytes(orthanc.instance_file(by_uid[sr_msg.control_id]["ID"]))
    key_path.write_bytes(orthanc.instance_file(by_uid[key_msg.control_id]["ID"]))
    assert dciodvfy_errors(sr_path) == []
    assert dciodvfy_errors(key_path) == []

    sr = dcmread(sr_path)
    assert (sr.PatientID, sr.PatientName, sr.StudyInstanceUID) == (
        source.PatientID,
        source.PatientName,
        source.StudyInstanceUID,
    )
    assert sr.PreliminaryFlag == "PRELIMINARY" and sr.VerificationFlag == "UNVERIFIED"
    evidence = [
        ref.ReferencedSOPInstanceUID
        for st in sr.CurrentRequestedProcedureEvidenceSequence
        for se in st.ReferencedSeriesSequence
        for ref in se.ReferencedSOPSequence
    ]
    assert evidence == [source.SOPInstanceUID]
    # out of the demo model's distribution: indeterminate, no number, the reason said
    report = hd.sr.MeasurementReport.from_sequence([hd.sr.ComprehensiveSR.from_dataset(sr)])
    (group,) = report.get_image_measurement_groups()
    assert group.get_measurements(name=RISK) == []
    (category,) = group.get_qualitative_evaluations(name=RISK_CATEGORY)
    assert category.value == hd.sr.CodedConcept("82334004", "SCT", "Indeterminate")
    comments = [i.value for i in group[0].ContentSequence if i.name == codes.DCM.Comment]
    assert any(c.startswith("No score: out-of-distribution") for c in comments), comments
    tree = dsrdump(sr_path)
    category_line = (
        '(pneumonia-risk-category,99XRAYGATE,"Pneumonia risk category (AI triage)")'
        '=(82334004,SCT,"Indeterminate")'
    )
    assert category_line in tree
    assert "NUM:" not in tree
    assert 'TEXT:(121106,DCM,"Comment")="No score: out-of-distribution' in tree

    key = dcmread(key_path)
    assert key.BurnedInAnnotation == "YES"
    assert list(key.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert key.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert key.StudyInstanceUID == study_uid and key.PatientID == source.PatientID
    assert key.Modality == "OT" or key.Modality


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_pacs_down_then_up_each_sr_arrives_once_in_order(
    settings: Settings, orthanc: Orthanc
) -> None:
    env = pacs_env(settings, orthanc)
    handlers = make_handlers(env.settings, env.store, env.queue)
    made = make_result(env.queue.engine, score=0.55, category="indeterminate")

    def failed_once() -> bool:
        """Every SR is in the outbox and its send job has tried (and failed) at least once."""
        sends = env.jobs(JobKind.SEND_PACS)
        return len(sends) == n_expected and all(j.attempts >= 1 for j in sends)

    n_expected = 1
    enqueue_emit(env.queue.engine, env.queue, JobKind.EMIT_PACS, made)
    run_until(env.queue, handlers, failed_once)  # type: ignore[arg-type]
    rescore(env.queue.engine, made.result_id, score=0.91, category="high")
    n_expected = 2
    enqueue_emit(env.queue.engine, env.queue, JobKind.EMIT_PACS, made)
    run_until(env.queue, handlers, failed_once)  # type: ignore[arg-type]
    assert [m.state for m in env.outbox()] == [OutboxState.PENDING] * 2, [
        (m.state, m.attempts, m.last_error) for m in env.outbox()
    ]
    assert "association with ORTHANC" in (env.outbox()[0].last_error or "")
    assert env.outbox()[1].attempts == 0  # never sent before the first one is delivered

    orthanc.start()
    run_until(env.queue, handlers, env.all_final, timeout=90)  # type: ignore[arg-type]
    first, second = env.outbox()
    assert (first.state, second.state) == (OutboxState.DELIVERED, OutboxState.DELIVERED)
    assert first.control_id == sr_instance_uid(made.study_uid, "cxr-demo:1.0.0", 1)
    assert second.control_id == sr_instance_uid(made.study_uid, "cxr-demo:1.0.0", 2)
    assert first.delivered_at is not None and second.delivered_at is not None
    assert first.delivered_at <= second.delivered_at
    # in Orthanc: each SR once, the first revision first, the second naming it as predecessor
    changes = orthanc.get("/changes", params={"since": 0, "limit": 1000})["Changes"]
    arrived = [
        orthanc.get(f"/instances/{c['ID']}")["MainDicomTags"]["SOPInstanceUID"]
        for c in changes
        if c["ChangeType"] == "NewInstance"
    ]
    assert arrived == [first.control_id, second.control_id]
    stats = orthanc.get("/statistics")
    assert stats["CountInstances"] == 2
    (found,) = [i for i in orthanc.find_instances(SOPInstanceUID=second.control_id)]
    later = dcmread(BytesIO(orthanc.instance_file(found["ID"])))
    pred = later.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert pred.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first.control_id
