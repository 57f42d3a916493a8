"""Admin API for images the pixel PHI step held for review (behind the ``admin`` role)::

GET /api/admin/deid/held                      the held images, newest first
GET /api/admin/deid/held/{id}/thumbnail.png   a held image's blurred review thumbnail
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from xraygate.core.errors import ObjectNotFound, StorageError
from xraygate.core.models.deid import held_thumbnail_key
from xraygate.gateway.api.admin import DbId
from xraygate.gateway.deps import ReadDb, StoreDep
from xraygate.gateway.errors import JsonRoute, NotFound, Unavailable
from xraygate.gateway.views.deid_review import HELD_PATH, HeldImage, held_instance, list_held

router = APIRouter(prefix=HELD_PATH, tags=["admin"], route_class=JsonRoute)


@router.get("")
def held_images(session: ReadDb) -> list[HeldImage]:
    """Images held for burned-in text, newest first (at most 200)."""
    return list_held(session)


@router.get(
    "/{export_id}/thumbnail.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {}, 422: {}, 503: {}},
)
def held_thumbnail(export_id: DbId, session: ReadDb, store: StoreDep) -> Response:
    """The review thumbnail of a held image (downscaled, text boxes filled, blurred)."""
    inst = held_instance(session, export_id)
    if inst is None:
        raise NotFound("no such held image")
    try:
        data = store.get_bytes(held_thumbnail_key(inst.sha256))
    except ObjectNotFound:
        raise NotFound("no thumbnail for this image") from None
    except StorageError as exc:
        raise Unavailable("object store unavailable") from exc
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})
