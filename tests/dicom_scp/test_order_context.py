"""The order a study fulfils (placer order number, requested procedure code) is indexed from
the DICOM request attributes, for HL7 ORC-2/OBR-2 and OBR-4: sent over a real association,
and read from the top-level attributes when there is no RequestAttributesSequence."""

from __future__ import annotations

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from sqlmodel import select

from tests.dicom_scp.conftest import RunningScp, sample, scu
from xraygate.core import db
from xraygate.core.ingest.header import order_values
from xraygate.core.models import Study

pytestmark = pytest.mark.integration


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def chest_with_request() -> Dataset:
    ds = dcmread(sample("RG1_UNCR.dcm"))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    request = Dataset()
    request.PlacerOrderNumberImagingServiceRequest = "PL-4711"
    request.RequestedProcedureID = "RP1"
    request.RequestedProcedureCodeSequence = [code("XRCH2", "99RIS", "XR CHEST 2 VIEWS")]
    ds.RequestAttributesSequence = [request]
    return ds


def test_request_attributes_are_indexed_over_a_real_association(scp: RunningScp) -> None:
    ds = chest_with_request()
    assoc = scu().associate("127.0.0.1", scp.port, ae_title="XRAYGATE")
    assert assoc.is_established
    assert int(assoc.send_c_store(ds).Status) == 0
    assoc.release()
    assert scp.server.ingestor.flush(), "acknowledged instances were not indexed"
    with db.read_session(scp.queue.engine) as s:
        study = s.exec(select(Study).where(Study.study_instance_uid == ds.StudyInstanceUID)).one()
    assert study.placer_order_number == "PL-4711"
    assert (
        study.requested_procedure_code,
        study.requested_procedure_scheme,
        study.requested_procedure_meaning,
    ) == ("XRCH2", "99RIS", "XR CHEST 2 VIEWS")


def test_top_level_attributes_are_the_fallback() -> None:
    ds = dcmread(sample("RG1_UNCR.dcm"))
    assert order_values(ds) == {
        "placer_order_number": "",
        "requested_procedure_code": "",
        "requested_procedure_scheme": "",
        "requested_procedure_meaning": "",
    }
    ds.PlacerOrderNumberImagingServiceRequest = "PL-9"
    ds.RequestedProcedureCodeSequence = [code("36643-5", "LN", "XR Chest 2 Views")]
    ds.RequestAttributesSequence = [Dataset()]  # an empty request item does not hide them
    assert order_values(ds) == {
        "placer_order_number": "PL-9",
        "requested_procedure_code": "36643-5",
        "requested_procedure_scheme": "LN",
        "requested_procedure_meaning": "XR Chest 2 Views",
    }


def test_the_request_item_wins_over_top_level_values() -> None:
    ds = chest_with_request()
    ds.PlacerOrderNumberImagingServiceRequest = "TOP"
    assert order_values(ds)["placer_order_number"] == "PL-4711"
