"""STOW-RS (PS3.18 10.5): ``POST /dicomweb/studies[/{study}]`` with
``multipart/related; type="application/dicom"``, for the ``modality`` role.

Each part is spooled to a file and handed to the same durable ingest path as the C-STORE SCP
(:class:`xraygate.core.ingest.Ingestor`): the same checks, the same store, index and ``infer``
job, the same DICOM statuses. The Ingestor runs without the journal here: the index rows are
committed before the answer leaves (the journal and its indexer thread belong to the SCP
process). The answer is a DICOM JSON store response (PS3.18 10.5.3):

- every instance stored: 200, Referenced SOP Sequence (with each one's WADO-RS URL);
- some failed: 202, plus a Failed SOP Sequence whose Failure Reason is the ingest's status;
- all failed: 409; a body that is not ``multipart/related`` of ``application/dicom``: 415; a body
  over ``XRAYGATE_DICOMWEB_MAX_REQUEST_BYTES``: 413; a malformed multipart body: 400.

Per part (Failure Reason, with an HTTP ``Warning`` naming the part and why):

- not DICOM, truncated, unparseable: ``0xC000`` (cannot understand), as the SCP answers;
- a part whose media type is not ``application/dicom``: ``0xC000``, never read as DICOM;
- a part over ``XRAYGATE_DICOMWEB_MAX_INSTANCE_BYTES``: ``0xA700`` (out of resources), not spooled;
- an instance of another study than the one in the URL: ``0xA900``;
- store full, database down: ``0xA7xx`` like the SCP (retry later).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from xraygate.core import multipart
from xraygate.core.config import Settings
from xraygate.core.ingest import Ingestor, Received, Status
from xraygate.core.queue import JobQueue
from xraygate.gateway.deps import AUDITED, QueueDep, SettingsDep, StoreDep
from xraygate.gateway.dicomweb.qido import element
from xraygate.gateway.dicomweb.routes import DICOM_JSON, PREFIX, Uid, base_url
from xraygate.gateway.errors import BadRequest, GatewayError, JsonRoute

router = APIRouter(prefix=PREFIX, tags=["dicomweb"], dependencies=[AUDITED], route_class=JsonRoute)

CALLING = "DICOMWEB"  # the index's calling AE title of objects stored over STOW-RS
REFERENCED_SOP = "00081199"
FAILED_SOP = "00081198"
RETRIEVE_URL = "00081190"


class PayloadTooLarge(GatewayError):
    status, code = 413, "too-costly"


class UnsupportedMediaType(GatewayError):
    status, code = 415, "not-supported"


@dataclass(frozen=True)
class PartOutcome:
    index: int
    status: int
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    why: str = ""


def ingestor(request: Request, settings: SettingsDep, store: StoreDep, queue: QueueDep) -> Ingestor:
    """One Ingestor per app, without the journal (see the module's docstring)."""
    found = getattr(request.app.state, "stow_ingestor", None)
    if not isinstance(found, Ingestor):
        found = _ingestor(settings, store, queue)
        request.app.state.stow_ingestor = found
    return found


def _ingestor(settings: Settings, store: Any, queue: JobQueue) -> Ingestor:
    return Ingestor(settings, store, queue, journal=False)


IngestorDep = Annotated[Ingestor, Depends(ingestor)]


async def _body(request: Request, limit: int) -> bytes:
    size = int(request.headers.get("content-length") or 0)
    if size > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
    return bytes(chunks)


def _check_content_type(header: str) -> None:
    media, params = multipart.media_params(header)
    if media != "multipart/related" or params.get("type", "").lower() != multipart.DICOM:
        raise UnsupportedMediaType('expected multipart/related; type="application/dicom"')


def _identify(path: Path) -> tuple[str, str, str, str, str]:
    """SOP class, SOP instance, study, series UIDs and transfer syntax of a spooled part ("" for
    what cannot be read: the ingest path then refuses it with its own status)."""
    try:
        ds = dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError):
        return "", "", "", "", ""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return (
        str(ds.get("SOPClassUID", "") or ""),
        str(ds.get("SOPInstanceUID", "") or ""),
        str(ds.get("StudyInstanceUID", "") or ""),
        str(ds.get("SeriesInstanceUID", "") or ""),
        syntax,
    )


def store_part(
    ingest: Ingestor, settings: Settings, part: multipart.Part, index: int, study_uid: str | None
) -> PartOutcome:
    """One part through the ingest path (blocking: run in a worker thread)."""
    media, _ = multipart.media_params(part.content_type or multipart.DICOM)
    if media != multipart.DICOM:
        why = f"part {index}: media type {media or '?'} is not application/dicom"
        return PartOutcome(index, Status.CANNOT_UNDERSTAND, why=why)
    if len(part.data) > settings.dicomweb_max_instance_bytes:
        why = f"part {index}: over {settings.dicomweb_max_instance_bytes} bytes"
        return PartOutcome(index, Status.OUT_OF_RESOURCES, why=why)
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="stow-", suffix=".dcm", dir=settings.tmp_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(part.data)
        sop_class, sop_uid, study, series, syntax = _identify(path)
        if study_uid is not None and study and study != study_uid:
            why = f"part {index}: instance of another study than the request's"
            return PartOutcome(index, Status.DATASET_MISMATCH, sop_class, sop_uid, why=why)
        received = Received(path, CALLING, sop_class, sop_uid, transfer_syntax_uid=syntax)
        result = ingest.ingest(received)
        why = "" if result.status == Status.SUCCESS else f"part {index}: {result.comment}"
        return PartOutcome(index, int(result.status), sop_class, sop_uid, study, series, why)
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # moved into the store on success; else the spool goes


def _response(outcomes: list[PartOutcome], base: str, study_uid: str | None) -> Response:
    stored = [o for o in outcomes if o.status == Status.SUCCESS]
    failed = [o for o in outcomes if o.status != Status.SUCCESS]
    body: dict[str, Any] = {}
    studies = {o.study_uid for o in stored}
    if study_uid or len(studies) == 1:
        body[RETRIEVE_URL] = element("UR", f"{base}/studies/{study_uid or studies.pop()}")
    if stored:
        body[REFERENCED_SOP] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": element("UI", o.sop_class_uid),
                    "00081155": element("UI", o.sop_instance_uid),
                    RETRIEVE_URL: element(
                        "UR",
                        f"{base}/studies/{o.study_uid}/series/{o.series_uid}"
                        f"/instances/{o.sop_instance_uid}",
                    ),
                }
                for o in stored
            ],
        }
    if failed:
        body[FAILED_SOP] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": element("UI", o.sop_class_uid),
                    "00081155": element("UI", o.sop_instance_uid),
                    "00081197": element("US", o.status),
                }
                for o in failed
            ],
        }
    status = 200 if not failed else 202 if stored else 409
    warnings = "; ".join(o.why for o in failed if o.why)[:1000]
    headers = {"Warning": f'299 xraygate "{_header_safe(warnings)}"'} if warnings else None
    return JSONResponse(body, status, headers=headers, media_type=DICOM_JSON)


def _header_safe(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii").replace('"', "'")


async def _stow(
    request: Request, settings: Settings, ingest: Ingestor, study_uid: str | None
) -> Response:
    _check_content_type(request.headers.get("content-type", ""))
    body = await _body(request, settings.dicomweb_max_request_bytes)
    try:
        parts = multipart.parse(body, request.headers["content-type"])
    except multipart.MultipartError as exc:
        raise BadRequest(str(exc)) from exc
    if not parts:
        raise BadRequest("no parts in the request")
    outcomes = []
    for n, part in enumerate(parts, start=1):
        outcome = await anyio.to_thread.run_sync(store_part, ingest, settings, part, n, study_uid)
        outcomes.append(outcome)
    return _response(outcomes, base_url(request), study_uid)


@router.post("/studies", response_class=Response, status_code=200)
async def store_instances(request: Request, settings: SettingsDep, ingest: IngestorDep) -> Response:
    """Store the request's instances (any studies)."""
    return await _stow(request, settings, ingest, None)


@router.post("/studies/{study_uid}", response_class=Response, status_code=200)
async def store_study_instances(
    request: Request, study_uid: Uid, settings: SettingsDep, ingest: IngestorDep
) -> Response:
    """Store the request's instances, all of which must belong to ``study_uid``."""
    return await _stow(request, settings, ingest, study_uid)
