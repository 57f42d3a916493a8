"""Images held by the pixel PHI step (burned-in text found, ``XRAYGATE_DEID_PIXEL_PHI=hold``):
listed for review on the admin page, each with its blurred thumbnail (written by the
``deidentify`` worker; it shows where text was found, never the text). Behind the ``admin`` role.

    GET /api/admin/deid/held                      the held images, newest first
    GET /api/admin/deid/held/{id}/thumbnail.png   a held image's review thumbnail
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import Session, col

from xraygate.core.errors import ObjectNotFound, StorageError
from xraygate.core.models import DeidExport, Instance, Study
from xraygate.core.models.deid import HELD, held_thumbnail_key
from xraygate.gateway.admin_api import DbId
from xraygate.gateway.deps import ReadDb, StoreDep

router = APIRouter(prefix="/api/admin/deid", tags=["admin"])
LIMIT = 200


class HeldImage(BaseModel):
    id: int
    study_instance_uid: str
    sop_instance_uid: str
    reason: str
    updated_at: datetime
    thumbnail: str  # URL


def list_held(session: Session, limit: int = LIMIT) -> list[HeldImage]:
    rows = session.execute(
        select(DeidExport, col(Instance.sop_instance_uid), col(Study.study_instance_uid))
        .join(Instance, col(Instance.id) == col(DeidExport.instance_pk))
        .join(Study, col(Study.id) == col(DeidExport.study_pk))
        .where(col(DeidExport.status) == HELD)
        .order_by(col(DeidExport.updated_at).desc(), col(DeidExport.id).desc())
        .limit(limit)
    ).all()
    return [
        HeldImage(
            id=row.id or 0,
            study_instance_uid=study_uid,
            sop_instance_uid=sop_uid,
            reason=row.reason,
            updated_at=row.updated_at,
            thumbnail=f"{router.prefix}/held/{row.id}/thumbnail.png",
        )
        for row, sop_uid, study_uid in rows
    ]


@router.get("/held")
def held_images(session: ReadDb) -> list[HeldImage]:
    """Images held for burned-in text, newest first (at most 200)."""
    return list_held(session)


@router.get(
    "/held/{export_id}/thumbnail.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {}, 422: {}, 503: {}},
)
def held_thumbnail(export_id: DbId, session: ReadDb, store: StoreDep) -> Response:
    """The review thumbnail of a held image (blurred, text boxes filled)."""
    row = session.get(DeidExport, export_id)
    inst = session.get(Instance, row.instance_pk) if row is not None else None
    if row is None or inst is None or row.status != HELD:
        raise HTTPException(404, "no such held image")
    try:
        data = store.get_bytes(held_thumbnail_key(inst.sha256))
    except ObjectNotFound:
        raise HTTPException(404, "no thumbnail for this image") from None
    except StorageError as exc:
        raise HTTPException(503, "object store unavailable") from exc
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})
