"""Read model of the images the pixel PHI step held (burned-in text found,
``XRAYGATE_DEID_PIXEL_PHI=hold``): listed on the admin page and by the admin API, each with the
blurred thumbnail the ``deidentify`` worker wrote (it shows where text was found, never the text).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import Session, col

from xraygate.core.models import DeidExport, Instance, Study
from xraygate.core.models.deid import HELD

HELD_PATH = "/api/admin/deid/held"
LIMIT = 200


class HeldImage(BaseModel):
    id: int
    study_instance_uid: str
    sop_instance_uid: str
    reason: str
    updated_at: datetime
    thumbnail: str  # URL of the review thumbnail


def list_held(session: Session, limit: int = LIMIT) -> list[HeldImage]:
    """Images held for burned-in text, newest first."""
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
            thumbnail=f"{HELD_PATH}/{row.id}/thumbnail.png",
        )
        for row, sop_uid, study_uid in rows
    ]


def held_instance(session: Session, export_id: int) -> Instance | None:
    """The instance of a held image's row (None when the row is not a held image)."""
    row = session.get(DeidExport, export_id)
    if row is None or row.status != HELD:
        return None
    return session.get(Instance, row.instance_pk)
