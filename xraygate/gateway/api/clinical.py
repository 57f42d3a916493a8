"""Clinician API: the worklist, a study's triage and its images rendered as PNG.

Included by the app behind the ``clinician`` role; every route here is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from xraygate.core.errors import ObjectNotFound, StorageError
from xraygate.core.logging import correlation_id, set_correlation
from xraygate.core.models import utcnow
from xraygate.gateway.deps import AUDITED, ReadDb, SettingsDep, StoreDep
from xraygate.gateway.errors import BadRequest, JsonRoute, NotFound, Unavailable, Unprocessable
from xraygate.gateway.views.imaging import RenderError, render_png
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


@router.get(
    "/studies/{study_uid}/instances/{sop_uid}/rendered",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {}, 422: {}, 503: {}},
)
async def rendered(
    study_uid: str, sop_uid: str, session: ReadDb, store: StoreDep, settings: SettingsDep
) -> Response:
    """The image as a display PNG (window from the header, MONOCHROME1 inverted, downscaled)."""
    set_correlation(correlation_id(study_uid))
    key = await anyio.to_thread.run_sync(instance_object_key, session, study_uid, sop_uid)
    if key is None:
        raise NotFound("unknown instance")
    try:
        data = await anyio.to_thread.run_sync(store.get_bytes, key)
        png = await anyio.to_thread.run_sync(render_png, data, settings.image_max_pixels)
    except RenderError as exc:
        raise Unprocessable(str(exc)) from exc
    except ObjectNotFound as exc:
        raise NotFound("image not in the object store") from exc
    except StorageError as exc:
        raise Unavailable("object store unavailable") from exc
    headers = {"Cache-Control": "private, max-age=300"}
    return Response(png, media_type="image/png", headers=headers)
