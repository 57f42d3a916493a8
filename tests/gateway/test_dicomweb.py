"""DICOMweb under /dicomweb, exercised with a real DICOMweb client (dicomweb-client) against the
app served by uvicorn: QIDO-RS finds what we hold, WADO-RS returns it byte for byte, rendered
frames are PNGs; clinicians read, every read is audited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from io import BytesIO

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from sqlalchemy import select
from sqlmodel import col

from tests.gateway.conftest import CHEST_CR, Gateway, Served, serve
from xraygate.core import db, multipart
from xraygate.core.models import AuditRecord


@pytest.fixture
def served(gw: Gateway) -> Iterator[Served]:
    yield from serve(gw.app)


def _client(served: Served, gw: Gateway, who: str = "clinician") -> DICOMwebClient:
    return DICOMwebClient(f"{served.base}/dicomweb", headers=gw.headers(who))


def _audit_records(gw: Gateway, at_least: int) -> list[AuditRecord]:
    """The /dicomweb audit records, once ``at_least`` are written (the audit middleware writes
    after the answer has left)."""
    deadline = time.monotonic() + 30
    while True:
        with db.read_session(db.get_engine(gw.settings.resolved_database_url)) as s:
            records = list(
                s.scalars(
                    select(AuditRecord)
                    .where(col(AuditRecord.route).startswith("/dicomweb"))
                    .order_by(col(AuditRecord.id))
                )
            )
        if len(records) >= at_least or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def _value(item: dict[str, dict[str, list[object]]], tag: str) -> object:
    return item[tag].get("Value", [None])[0]


def test_qido_finds_studies_series_and_instances(gw: Gateway, served: Served) -> None:
    client = _client(served, gw)
    everything = client.search_for_studies()
    assert {_value(s, "0020000D") for s in everything} == {gw.high.study_uid, gw.low.study_uid}
    (high,) = client.search_for_studies(search_filters={"PatientID": "P-HIGH"})
    assert _value(high, "0020000D") == gw.high.study_uid
    assert _value(high, "00100010") == {"Alphabetic": "HIGH^HUGO"}
    assert _value(high, "00080050") == "A-HIGH"
    assert _value(high, "00201208") == 1
    assert client.search_for_studies(search_filters={"PatientName": "HIGH*"}) == [high]
    assert client.search_for_studies(search_filters={"AccessionNumber": "nope"}) == []
    assert len(client.search_for_studies(search_filters={"StudyDate": "20240101-20241231"})) == 2
    assert client.search_for_studies(search_filters={"StudyDate": "-20231231"}) == []
    assert len(client.search_for_studies(search_filters={"ModalitiesInStudy": "CR"})) == 2
    assert client.search_for_studies(search_filters={"ModalitiesInStudy": "MR"}) == []
    assert len(client.search_for_studies(limit=1)) == 1

    (series,) = client.search_for_series(study_instance_uid=gw.high.study_uid)
    assert _value(series, "00080060") == "CR"
    series_uid = str(_value(series, "0020000E"))
    (instance,) = client.search_for_instances(
        study_instance_uid=gw.high.study_uid, series_instance_uid=series_uid
    )
    assert _value(instance, "00080018") == gw.high.instance_uids[0]
    assert client.search_for_instances(study_instance_uid=gw.high.study_uid) == [instance]

    refused = httpx.get(
        f"{served.base}/dicomweb/studies", params={"PatientSize": "2"}, headers=gw.headers("admin")
    )
    assert refused.status_code == 400 and "PatientSize" in refused.json()["detail"]
    unknown = httpx.get(
        f"{served.base}/dicomweb/studies/1.2.3/series", headers=gw.headers("clinician")
    )
    assert unknown.status_code == 404


def test_wado_returns_the_stored_object_byte_for_byte_and_renders_it(
    gw: Gateway, served: Served
) -> None:
    client = _client(served, gw)
    (series,) = client.search_for_series(study_instance_uid=gw.high.study_uid)
    series_uid = str(_value(series, "0020000E"))
    sop = gw.high.instance_uids[0]
    url = f"{served.base}/dicomweb/studies/{gw.high.study_uid}/series/{series_uid}/instances/{sop}"
    reply = httpx.get(
        url,
        headers={
            **gw.headers("clinician"),
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*',
        },
    )
    assert reply.status_code == 200
    (part,) = multipart.parse(reply.content, reply.headers["content-type"])
    assert part.data == CHEST_CR.read_bytes()  # byte for byte as stored
    assert part.content_type.endswith("transfer-syntax=1.2.840.10008.1.2.1")
    study = httpx.get(
        f"{served.base}/dicomweb/studies/{gw.high.study_uid}", headers=gw.headers("admin")
    )
    assert [p.data for p in multipart.parse(study.content, study.headers["content-type"])] == [
        CHEST_CR.read_bytes()
    ]
    wrong_syntax = httpx.get(
        url,
        headers={
            **gw.headers("clinician"),
            "Accept": 'multipart/related; type="application/dicom"; '
            "transfer-syntax=1.2.840.10008.1.2.4.50",
        },
    )
    assert wrong_syntax.status_code == 406

    ds = client.retrieve_instance(gw.high.study_uid, series_uid, sop)
    assert ds.Rows == 1955 and ds.PhotometricInterpretation == "MONOCHROME1"
    metadata = client.retrieve_instance_metadata(gw.high.study_uid, series_uid, sop)
    assert _value(metadata, "00280010") == 1955
    assert "BulkDataURI" in metadata["7FE00010"]
    png = client.retrieve_instance_rendered(
        gw.high.study_uid, series_uid, sop, media_types=("image/png",)
    )
    assert Image.open(BytesIO(png)).format == "PNG"
    frame = client.retrieve_instance_frames_rendered(
        gw.high.study_uid, series_uid, sop, frame_numbers=[1], media_types=("image/png",)
    )
    assert Image.open(BytesIO(frame)).size == Image.open(BytesIO(png)).size


def test_only_clinicians_and_admins_read_and_every_read_is_audited(
    gw: Gateway, served: Served
) -> None:
    url = f"{served.base}/dicomweb/studies"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=gw.headers("ehr")).status_code == 403
    assert httpx.get(url, headers=gw.headers("clinician")).status_code == 200
    study = httpx.get(f"{url}/{gw.high.study_uid}/series", headers=gw.headers("admin"))
    assert study.status_code == 200
    records = _audit_records(gw, 4)
    assert [(r.actor, r.status) for r in records] == [
        ("anonymous", 401),
        ("ehr-system", 403),
        ("dr.house", 200),
        ("tester", 200),
    ]
    assert records[-1].study_uid == gw.high.study_uid
