"""QIDO-RS and WADO-RS under ``/dicomweb`` (PS3.18 10.4, 10.6): clinicians and admins read,
every call audited.

======================================================================  ============================
route                                                                   answer
======================================================================  ============================
GET /dicomweb/studies                                                   QIDO-RS studies (DICOM JSON)
GET /dicomweb/studies/{study}/series                                    QIDO-RS series
GET /dicomweb/studies/{study}/instances                                 QIDO-RS instances
GET /dicomweb/studies/{study}/series/{series}/instances                 QIDO-RS instances
GET /dicomweb/studies/{study}                                           WADO-RS the study's objects
GET /dicomweb/studies/{study}/series/{series}                           WADO-RS the series' objects
GET /dicomweb/studies/{study}/series/{series}/instances/{sop}           WADO-RS one object
GET /dicomweb/studies/{study}/series/{series}/instances/{sop}/metadata  DICOM JSON, no bulk data
GET .../instances/{sop}/rendered, .../instances/{sop}/frames/{n}/rendered  image/png
======================================================================  ============================

Objects are returned as stored, byte for byte (``multipart/related; type="application/dicom"``,
each part labelled with its transfer syntax): we never transcode, so a request for another
transfer syntax is answered 406.
"""

from __future__ import annotations

from io import BytesIO
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydicom import dcmread

from xraygate.core import multipart
from xraygate.core.errors import ObjectNotFound, StorageError
from xraygate.core.logging import correlation_id, set_correlation
from xraygate.gateway.deps import AUDITED, ReadDb, SettingsDep, StoreDep
from xraygate.gateway.dicomweb import qido
from xraygate.gateway.errors import (
    BadRequest,
    JsonRoute,
    NotAcceptable,
    NotFound,
    Unavailable,
    Unprocessable,
)
from xraygate.gateway.views.imaging import RenderError, render_png

DICOM_JSON = "application/dicom+json"
PREFIX = "/dicomweb"
router = APIRouter(prefix=PREFIX, tags=["dicomweb"], dependencies=[AUDITED], route_class=JsonRoute)

Uid = Annotated[str, Path(max_length=64, pattern=r"^[0-9.]+$")]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _json(body: Any) -> Response:
    return JSONResponse(body, media_type=DICOM_JSON)


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


# --- QIDO-RS ------------------------------------------------------------------------------------


@router.get("/studies", response_class=Response)
def search_studies(request: Request, session: ReadDb) -> Response:
    """Studies we hold matching the query (PatientID, PatientName, AccessionNumber, StudyDate,
    StudyInstanceUID, ModalitiesInStudy, ...)."""
    try:
        return _json(qido.search_studies(session, _params(request), base_url(request)))
    except qido.QidoError as exc:
        raise BadRequest(str(exc)) from exc


@router.get("/studies/{study_uid}/series", response_class=Response)
def search_series(request: Request, study_uid: Uid, session: ReadDb) -> Response:
    set_correlation(correlation_id(study_uid))
    try:
        found = qido.search_series(session, study_uid, _params(request), base_url(request))
    except qido.QidoError as exc:
        raise BadRequest(str(exc)) from exc
    if found is None:
        raise NotFound("unknown study")
    return _json(found)


@router.get("/studies/{study_uid}/instances", response_class=Response)
def search_study_instances(request: Request, study_uid: Uid, session: ReadDb) -> Response:
    return _instances(request, session, study_uid, None)


@router.get("/studies/{study_uid}/series/{series_uid}/instances", response_class=Response)
def search_series_instances(
    request: Request, study_uid: Uid, series_uid: Uid, session: ReadDb
) -> Response:
    return _instances(request, session, study_uid, series_uid)


def _instances(request: Request, session: Any, study_uid: str, series_uid: str | None) -> Response:
    set_correlation(correlation_id(study_uid))
    try:
        found = qido.search_instances(
            session, study_uid, series_uid, _params(request), base_url(request)
        )
    except qido.QidoError as exc:
        raise BadRequest(str(exc)) from exc
    if found is None:
        raise NotFound("unknown study or series")
    return _json(found)


# --- WADO-RS ------------------------------------------------------------------------------------


def _check_accept(request: Request, stored: list[qido.StoredInstance]) -> None:
    """406 unless the caller accepts the objects as stored (any transfer syntax, or theirs)."""
    accept = request.headers.get("accept", "*/*")
    for choice in accept.split(","):
        media, params = multipart.media_params(choice)
        if media in ("*/*", "multipart/*"):
            return
        if media == "multipart/related" and params.get("type", multipart.DICOM) in (
            multipart.DICOM,
            "application/*",
        ):
            wanted = params.get("transfer-syntax", "*")
            if wanted == "*" or all(s.transfer_syntax_uid == wanted for s in stored):
                return
    raise NotAcceptable(
        "objects are served as stored: accept multipart/related; "
        'type="application/dicom"; transfer-syntax=*'
    )


async def _retrieve(
    request: Request,
    session: Any,
    store: Any,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> Response:
    set_correlation(correlation_id(study_uid))
    stored = await anyio.to_thread.run_sync(
        qido.stored_instances, session, study_uid, series_uid, sop_uid
    )
    if not stored:
        raise NotFound("unknown study, series or instance")
    _check_accept(request, stored)
    parts = []
    for item in stored:
        data = await _read(store, item.object_key)
        parts.append((f"{multipart.DICOM}; transfer-syntax={item.transfer_syntax_uid}", data))
    boundary = multipart.new_boundary()
    return Response(multipart.build(parts, boundary), media_type=multipart.content_type(boundary))


async def _read(store: Any, key: str) -> bytes:
    try:
        data: bytes = await anyio.to_thread.run_sync(store.get_bytes, key)
    except ObjectNotFound as exc:
        raise NotFound("the stored object is missing") from exc
    except StorageError as exc:
        raise Unavailable("object store unavailable") from exc
    return data


@router.get("/studies/{study_uid}", response_class=Response)
async def retrieve_study(
    request: Request, study_uid: Uid, session: ReadDb, store: StoreDep
) -> Response:
    return await _retrieve(request, session, store, study_uid)


@router.get("/studies/{study_uid}/series/{series_uid}", response_class=Response)
async def retrieve_series(
    request: Request, study_uid: Uid, series_uid: Uid, session: ReadDb, store: StoreDep
) -> Response:
    return await _retrieve(request, session, store, study_uid, series_uid)


@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}", response_class=Response)
async def retrieve_instance(
    request: Request,
    study_uid: Uid,
    series_uid: Uid,
    sop_uid: Uid,
    session: ReadDb,
    store: StoreDep,
) -> Response:
    return await _retrieve(request, session, store, study_uid, series_uid, sop_uid)


async def _one(session: Any, store: Any, study: str, series: str, sop: str) -> bytes:
    set_correlation(correlation_id(study))
    stored = await anyio.to_thread.run_sync(qido.stored_instances, session, study, series, sop)
    if not stored:
        raise NotFound("unknown instance")
    return await _read(store, stored[0].object_key)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/metadata",
    response_class=Response,
)
async def instance_metadata(
    request: Request,
    study_uid: Uid,
    series_uid: Uid,
    sop_uid: Uid,
    session: ReadDb,
    store: StoreDep,
) -> Response:
    """The instance's attributes as DICOM JSON; bulk data (pixels) as a BulkDataURI."""
    data = await _one(session, store, study_uid, series_uid, sop_uid)
    url = f"{base_url(request)}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"

    def bulk(element: Any) -> str:
        return url

    ds = dcmread(BytesIO(data))
    return _json([ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulk)])


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/rendered",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def rendered_instance(
    study_uid: Uid,
    series_uid: Uid,
    sop_uid: Uid,
    session: ReadDb,
    store: StoreDep,
    settings: SettingsDep,
) -> Response:
    return await _render(session, store, settings.image_max_pixels, study_uid, series_uid, sop_uid)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frame}/rendered",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def rendered_frame(
    study_uid: Uid,
    series_uid: Uid,
    sop_uid: Uid,
    frame: int,
    session: ReadDb,
    store: StoreDep,
    settings: SettingsDep,
) -> Response:
    """Frame 1 of a single-frame object (the images we hold are single-frame radiographs)."""
    if frame != 1:
        raise NotFound("only frame 1 is served")
    return await _render(session, store, settings.image_max_pixels, study_uid, series_uid, sop_uid)


async def _render(
    session: Any, store: Any, max_side: int, study: str, series: str, sop: str
) -> Response:
    data = await _one(session, store, study, series, sop)
    try:
        png = await anyio.to_thread.run_sync(render_png, data, max_side)
    except RenderError as exc:
        raise Unprocessable(str(exc)) from exc
    return Response(png, media_type="image/png")
