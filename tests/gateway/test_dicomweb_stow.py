"""STOW-RS into the ingest path the SCP uses, with a real DICOMweb client (dicomweb-client) and
with Orthanc's DICOMweb plugin forwarding a study to us; bad parts get their own failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlmodel import col

from tests.gateway.conftest import API_KEYS, CHEST_CR, Gateway, Served, serve
from tests.orthanc import Orthanc
from tests.synthetic_cr import synthetic_cr
from xraygate.core import db, multipart
from xraygate.core.models import Instance, Job

pytestmark = pytest.mark.integration
MODALITY_KEY = {"X-API-Key": API_KEYS["modality-box"][1]}


@pytest.fixture
def served(gw: Gateway) -> Iterator[Served]:
    yield from serve(gw.app)


def _study_files(tmp: Path, n: int = 3) -> list[Path]:
    study = generate_uid()
    rng = np.random.default_rng(7)
    return [
        synthetic_cr(tmp / f"s{i}.dcm", rng.random((64, 64), dtype=np.float32), study_uid=study)
        for i in range(n)
    ]


def _wado(served: Served, gw: Gateway, study: str) -> list[bytes]:
    reply = httpx.get(f"{served.base}/dicomweb/studies/{study}", headers=gw.headers("clinician"))
    assert reply.status_code == 200, reply.text
    return [p.data for p in multipart.parse(reply.content, reply.headers["content-type"])]


def _post(served: Served, parts: list[tuple[str, bytes]], study: str = "") -> httpx.Response:
    boundary = multipart.new_boundary()
    url = f"{served.base}/dicomweb/studies" + (f"/{study}" if study else "")
    return httpx.post(
        url,
        content=multipart.build(parts, boundary),
        headers={**MODALITY_KEY, "Content-Type": multipart.content_type(boundary)},
        timeout=60,
    )


def test_dicomweb_client_stores_rg1_and_a_study_then_finds_and_retrieves_them(
    gw: Gateway, served: Served, tmp_path: Path
) -> None:
    store = DICOMwebClient(f"{served.base}/dicomweb", headers=MODALITY_KEY)
    read = DICOMwebClient(f"{served.base}/dicomweb", headers=gw.headers("clinician"))
    rg1 = dcmread(CHEST_CR)
    answer = store.store_instances([rg1])
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == rg1.SOPInstanceUID
    assert "FailedSOPSequence" not in answer

    files = _study_files(tmp_path)
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    reply = _post(served, [(multipart.DICOM, f.read_bytes()) for f in files], study_uid)
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["00081199"]["Value"]) == 3
    assert reply.json()["00081190"]["Value"] == [f"{served.base}/dicomweb/studies/{study_uid}"]

    (found,) = read.search_for_studies(search_filters={"StudyInstanceUID": study_uid})
    assert found["00201208"]["Value"] == [3]
    (rg1_study,) = read.search_for_studies(search_filters={"PatientID": rg1.PatientID})
    assert rg1_study["0020000D"]["Value"] == [rg1.StudyInstanceUID]
    # WADO-RS: what was stored, byte for byte
    assert sorted(_wado(served, gw, study_uid)) == sorted(f.read_bytes() for f in files)
    retrieved = read.retrieve_instance(
        rg1.StudyInstanceUID, rg1.SeriesInstanceUID, rg1.SOPInstanceUID
    )
    assert retrieved.PixelData == rg1.PixelData
    # the same ingest path as the SCP: indexed with an infer job per instance
    with db.read_session(db.get_engine(gw.settings.resolved_database_url)) as s:
        stowed = list(s.scalars(select(Instance).where(col(Instance.calling_aet) == "DICOMWEB")))
        infers = list(s.scalars(select(Job).where(col(Job.kind) == "infer")))
    assert len(stowed) == 4
    assert {j.instance_uid for j in infers} >= {i.sop_instance_uid for i in stowed}


def test_bad_parts_get_their_own_failure_and_good_ones_are_stored(
    gw: Gateway, served: Served, tmp_path: Path
) -> None:
    good, other = _study_files(tmp_path, 2)
    truncated = good.read_bytes()[:-5000]
    reply = _post(
        served,
        [
            (multipart.DICOM, good.read_bytes()),
            (multipart.DICOM, b"this is not DICOM at all" * 10),
            ("image/jpeg", other.read_bytes()),
            (multipart.DICOM, truncated),
        ],
    )
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert len(body["00081199"]["Value"]) == 1
    failed = body["00081198"]["Value"]
    assert [f["00081197"]["Value"][0] for f in failed] == [0xC000, 0xC000, 0xC000]
    assert "not application/dicom" in reply.headers["warning"]
    # nothing but the good one is held
    with db.read_session(db.get_engine(gw.settings.resolved_database_url)) as s:
        uids = set(s.scalars(select(col(Instance.sop_instance_uid))))
    assert str(dcmread(good).SOPInstanceUID) in uids
    assert str(dcmread(other).SOPInstanceUID) not in uids

    all_bad = _post(served, [(multipart.DICOM, b"nope")])
    assert all_bad.status_code == 409
    wrong_study = _post(served, [(multipart.DICOM, other.read_bytes())], study="1.2.3.4")
    assert wrong_study.status_code == 409
    assert wrong_study.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    not_multipart = httpx.post(
        f"{served.base}/dicomweb/studies",
        content=good.read_bytes(),
        headers={**MODALITY_KEY, "Content-Type": "application/dicom"},
    )
    assert not_multipart.status_code == 415
    clinician = httpx.post(
        f"{served.base}/dicomweb/studies",
        content=b"",
        headers={**gw.headers("clinician"), "Content-Type": multipart.content_type("x")},
    )
    assert clinician.status_code == 403


def test_oversized_parts_and_requests_are_refused(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tests.gateway.conftest import gateway_settings
    from xraygate.gateway.app import create_app

    settings = gateway_settings(
        tmp_path,
        dicomweb_max_instance_bytes=50_000,
        dicomweb_max_request_bytes=400_000,
        http_max_body_bytes=4096,  # the gateway's limit elsewhere: STOW-RS has its own
    )
    small, big = (
        synthetic_cr(tmp_path / "small.dcm", np.zeros((64, 64), np.float32)),
        synthetic_cr(tmp_path / "big.dcm", np.zeros((256, 256), np.float32)),
    )
    client = TestClient(create_app(settings))
    boundary = multipart.new_boundary()
    headers = {**MODALITY_KEY, "Content-Type": multipart.content_type(boundary)}
    body = multipart.build(
        [(multipart.DICOM, small.read_bytes()), (multipart.DICOM, big.read_bytes())], boundary
    )
    reply = client.post("/dicomweb/studies", content=body, headers=headers)
    assert reply.status_code == 202, reply.text
    (failed,) = reply.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA700]
    assert "over 50000 bytes" in reply.headers["warning"]
    huge = multipart.build([(multipart.DICOM, big.read_bytes())] * 4, boundary)
    assert client.post("/dicomweb/studies", content=huge, headers=headers).status_code == 413
    feedback = client.post("/api/studies/1.2.3/feedback", content=b"x" * 5000, headers=headers)
    assert feedback.status_code == 413  # elsewhere the gateway's own limit still holds


def test_orthanc_forwards_a_study_to_our_stow_rs(
    gw: Gateway, served: Served, tmp_path: Path
) -> None:
    servers = {
        "xraygate": {
            "Url": f"{served.base}/dicomweb/",
            "HttpHeaders": dict(MODALITY_KEY),
        }
    }
    files = _study_files(tmp_path, 2)
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    with Orthanc(tmp_path / "orthanc", dicomweb=True, dicomweb_servers=servers) as orthanc:
        ids = {orthanc.upload(f.read_bytes()) for f in files}
        study_id = orthanc.study_of(ids.pop())["ID"]
        reply = httpx.post(
            f"{orthanc.base}/dicom-web/servers/xraygate/stow",
            json={"Resources": [study_id]},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
    assert sorted(_wado(served, gw, study_uid)) == sorted(f.read_bytes() for f in files)
