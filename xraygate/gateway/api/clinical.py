"""Clinician API: the worklist, a study's triage, its images rendered as PNG (any window, up to
full resolution) and the model's saliency maps.

Included by the app behind the ``clinician`` role; every route here is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from xraygate.core.errors import ObjectNotFound, StorageError
from xraygate.core.logging import correlation_id, set_correlation
from xraygate.core.models import utcnow
from xraygate.core.storage import ObjectStore
from xraygate.gateway.deps import AUDITED, ReadDb, SettingsDep, StoreDep
from xraygate.gateway.errors import BadRequest, JsonRoute, NotFound, Unavailable, Unprocessable
from xraygate.gateway.views.imaging import Preset, RenderError, Window, render
from xraygate.gateway.views.saliency import saliency_key
from xraygate.gateway.views.studies import StudyStatus, StudyView, WorklistRow, instance_object_key
from xraygate.gateway.views.studies import new_high_risk as count_new_high_risk
from xraygate.gateway.views.studies import study_view as load_study_view
from xraygate.gateway.views.studies import worklist as load_worklist

router = APIRouter(prefix="/api", tags=["clinician"], dependencies=[AUDITED], route_class=JsonRoute)


@router.get("/worklist")
def worklist(
    session: ReadDb,
    settings: SettingsDep,
    status: Annotated[StudyStatus | None, Query(description="only studies in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[WorklistRow]:
    """The newest studies, highest risk first, with their status."""
    return load_worklist(session, settings, limit=limit, status=status)


class NewHighRisk(BaseModel):
    count: int
    now: datetime


@router.get("/worklist/new-high-risk")
def new_high_risk(
    session: ReadDb,
    since: Annotated[datetime, Query(description="count results written after this instant")],
) -> NewHighRisk:
    """How many high-risk study results arrived since ``since`` (the worklist's badge)."""
    if since.tzinfo is None:
        raise BadRequest("since needs a time zone (e.g. 2026-01-01T08:00:00+00:00)")
    return NewHighRisk(count=count_new_high_risk(session, since), now=utcnow())


@router.get("/studies/{study_uid}")
def study(study_uid: str, session: ReadDb, settings: SettingsDep) -> StudyView:
    """A study's triage: score, category, model version, images, delivery and feedback."""
    set_correlation(correlation_id(study_uid))
    view = load_study_view(session, settings, study_uid)
    if view is None:
        raise NotFound("unknown study")
    return view


IMAGE = {"content": {"image/png": {}}, "description": "a PNG image"}


@router.get(
    "/studies/{study_uid}/instances/{sop_uid}/rendered",
    response_class=Response,
    responses={200: IMAGE, 400: {}, 404: {}, 422: {}, 503: {}},
)
async def rendered(
    study_uid: str,
    sop_uid: str,
    session: ReadDb,
    store: StoreDep,
    settings: SettingsDep,
    wc: Annotated[
        float | None, Query(allow_inf_nan=False, description="window centre (modality values)")
    ] = None,
    ww: Annotated[
        float | None, Query(gt=0, allow_inf_nan=False, description="window width")
    ] = None,
    preset: Annotated[Preset, Query(description="window preset when wc/ww are not given")] = (
        "default"
    ),
    size: Annotated[
        int | None,
        Query(
            ge=16,
            le=65536,
            description="longest side wanted: at most XRAYGATE_IMAGE_FULL_MAX_PIXELS; "
            "default XRAYGATE_IMAGE_MAX_PIXELS; never enlarged",
        ),
    ] = None,
) -> Response:
    """The image as a display PNG (window from the header, or ``wc``/``ww``, or a preset;
    MONOCHROME1 inverted; downscaled). The window applied, the image's value range and its
    stored size come back in ``X-Window``, ``X-Value-Range`` and ``X-Image-Size``."""
    set_correlation(correlation_id(study_uid))
    if (wc is None) != (ww is None):
        raise BadRequest("give both wc and ww, or neither")
    window = Window(wc, ww) if wc is not None and ww is not None else None
    side = min(size or settings.image_max_pixels, settings.image_full_max_pixels)
    data = await _object(session, store, study_uid, sop_uid)
    try:
        out = await anyio.to_thread.run_sync(render, data, side, window, preset)
    except RenderError as exc:
        raise Unprocessable(str(exc)) from exc
    headers = {
        "Cache-Control": "private, max-age=300",
        "X-Image-Size": "{} {}".format(*out.source_size),
        "X-Value-Range": "{:g} {:g}".format(*out.value_range),
    }
    if out.window is not None:
        headers["X-Window"] = f"{out.window.center:g} {out.window.width:g}"
    return Response(out.png, media_type="image/png", headers=headers)


@router.get(
    "/studies/{study_uid}/instances/{sop_uid}/saliency",
    response_class=Response,
    responses={200: IMAGE, 404: {}, 422: {}, 503: {}},
)
async def saliency(study_uid: str, sop_uid: str, session: ReadDb, store: StoreDep) -> Response:
    """The emitting model's saliency map of the image (Grad-CAM): an 8-bit grey PNG at the
    model's input size, covering the whole image (255: where the score is most sensitive).
    It shows what the demonstration model responds to, not where disease is."""
    set_correlation(correlation_id(study_uid))
    key = await anyio.to_thread.run_sync(saliency_key, session, study_uid, sop_uid)
    if key is None:
        raise NotFound("no saliency map for this image")
    png = await _read(store, key)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


async def _object(session: Any, store: ObjectStore, study_uid: str, sop_uid: str) -> bytes:
    key = await anyio.to_thread.run_sync(instance_object_key, session, study_uid, sop_uid)
    if key is None:
        raise NotFound("unknown instance")
    return await _read(store, key)


async def _read(store: ObjectStore, key: str) -> bytes:
    try:
        data: bytes = await anyio.to_thread.run_sync(store.get_bytes, key)
    except ObjectNotFound as exc:
        raise NotFound("image not in the object store") from exc
    except StorageError as exc:
        raise Unavailable("object store unavailable") from exc
    return data
