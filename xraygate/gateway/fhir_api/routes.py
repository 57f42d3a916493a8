r"""The FHIR R4 REST API (read-only) under ``/fhir``: read, vread, history, search.

The router does no authentication itself; the gateway includes it with its auth dependencies.
Resources come from ``fhir_resources`` (written by the ``emit-fhir`` jobs). Errors are
OperationOutcomes with the matching HTTP status (``FhirRoute``); reads carry
``ETag: W/"<versionId>"`` and ``Last-Modified`` and answer ``304`` to a matching
``If-None-Match``. Every call is audited (``/fhir/metadata``, in ``capability``, is not).

SMART scopes: ``deps.require_fhir_reader`` checks the type and interaction; here every resource
an answer carries (matches, ``_include``\ d, read, vread, history) is checked against the
caller's :class:`~xraygate.gateway.auth.scopes.FhirAccess`, and a search under ``patient/``
scopes only is limited in SQL to the patient's compartment (so totals and paging stay true).
"""

from __future__ import annotations

import re
import uuid
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request, Response
from sqlalchemy import ColumnElement, select
from sqlmodel import Session, col

from xraygate.core.models import FhirResource, utcnow
from xraygate.gateway.auth.scopes import FhirAccess, patient_reference
from xraygate.gateway.deps import AUDITED, PrincipalDep, ReadDb, SettingsDep
from xraygate.gateway.errors import BadRequest, FhirRoute, Forbidden, NotFound, fhir_json
from xraygate.gateway.fhir_api.capability import JSON_ONLY, PREFIX, base_url
from xraygate.gateway.fhir_api.params import SEARCH_PARAMS
from xraygate.gateway.fhir_api.search import included, parse_query, revincluded, run_search

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

router = APIRouter(
    prefix=PREFIX, tags=["fhir"], dependencies=[AUDITED, JSON_ONLY], route_class=FhirRoute
)


def _check_type(resource_type: str) -> None:
    if resource_type not in SEARCH_PARAMS:
        raise NotFound(f"resource type {resource_type!r} is not served", code="not-supported")


def _check_id(resource_id: str) -> None:
    if not ID_RE.match(resource_id):
        raise BadRequest(f"invalid resource id {resource_id!r}")


# --- endpoints -----------------------------------------------------------------------------------


@router.get("/{resource_type}", response_class=Response)
def search(
    resource_type: str,
    request: Request,
    session: ReadDb,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    """Search a resource type; a ``searchset`` Bundle with paging links."""
    _check_type(resource_type)
    lenient = "handling=lenient" in request.headers.get("prefer", "")
    items = list(request.query_params.multi_items())
    tz = ZoneInfo(settings.local_timezone)
    query = parse_query(session, resource_type, items, tz, strict=not lenient)
    access = principal.fhir
    if access.compartment_only(resource_type, "search"):
        query.where.append(_compartment(resource_type, access))
    total, found = run_search(session, query)
    matches = [r for r in found if access.permits(r, "search")]
    total -= len(found) - len(matches)
    extra = [
        r
        for r in included(session, query, matches) + revincluded(session, query, matches)
        if access.permits(r, "include")
    ]
    base = base_url(request, settings)
    entries = [_entry(base, r, "match") for r in matches] + [
        _entry(base, r, "include") for r in extra
    ]
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": utcnow().isoformat(timespec="milliseconds")},
        "type": "searchset",
        "total": total,
        "link": _links(base, resource_type, items, query.offset, query.count, total),
        "entry": entries,
    }
    if not entries:
        del bundle["entry"]
    return fhir_json(bundle)


@router.get("/{resource_type}/{resource_id}", response_class=Response)
def read(
    resource_type: str,
    resource_id: str,
    request: Request,
    session: ReadDb,
    principal: PrincipalDep,
) -> Response:
    """The current version, with ETag and Last-Modified."""
    row = _load(session, resource_type, resource_id, None)
    _check_access(principal.fhir, [row])
    return _resource_response(row, request)


@router.get("/{resource_type}/{resource_id}/_history", response_class=Response)
def history(
    resource_type: str,
    resource_id: str,
    request: Request,
    session: ReadDb,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    """Every version, newest first (a ``history`` Bundle)."""
    _check_type(resource_type)
    _check_id(resource_id)
    rows = list(
        session.scalars(
            select(FhirResource)
            .where(
                col(FhirResource.resource_type) == resource_type,
                col(FhirResource.resource_id) == resource_id,
            )
            .order_by(col(FhirResource.version_id).desc())
        )
    )
    if not rows:
        raise NotFound(f"{resource_type}/{resource_id} not found")
    _check_access(principal.fhir, rows)
    base = base_url(request, settings)
    entries = []
    for row in rows:
        path = f"{resource_type}/{resource_id}"
        entries.append(
            {
                "fullUrl": f"{base}/{path}",
                "resource": row.content,
                "request": {"method": "POST" if row.version_id == 1 else "PUT", "url": path},
                "response": {
                    "status": "201 Created" if row.version_id == 1 else "200 OK",
                    "etag": f'W/"{row.version_id}"',
                    "lastModified": row.last_updated.isoformat(timespec="milliseconds"),
                },
            }
        )
    bundle = {"resourceType": "Bundle", "type": "history", "total": len(rows), "entry": entries}
    return fhir_json(bundle)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}", response_class=Response)
def vread(
    resource_type: str,
    resource_id: str,
    version_id: str,
    request: Request,
    session: ReadDb,
    principal: PrincipalDep,
) -> Response:
    """One version."""
    if not version_id.isdigit() or len(version_id) > 9:
        raise BadRequest(f"invalid version id {version_id!r}")
    row = _load(session, resource_type, resource_id, int(version_id))
    _check_access(principal.fhir, [row])
    return _resource_response(row, request)


# --- helpers -------------------------------------------------------------------------------------


def _check_access(access: FhirAccess, rows: list[FhirResource]) -> None:
    """403 unless the caller's scopes cover every version about to be returned."""
    if not all(access.permits(row.content, "read") for row in rows):
        raise Forbidden("token scopes do not cover this resource")


def _compartment(resource_type: str, access: FhirAccess) -> ColumnElement[bool]:
    """The SQL condition of the token patient's compartment (``compartment_only`` callers)."""
    patient = access.patient or ""
    if resource_type == "Patient":
        return col(FhirResource.resource_id) == patient
    return col(FhirResource.patient_ref) == patient_reference(patient)


def _load(
    session: Session, resource_type: str, resource_id: str, version: int | None
) -> FhirResource:
    _check_type(resource_type)
    _check_id(resource_id)
    query = select(FhirResource).where(
        col(FhirResource.resource_type) == resource_type,
        col(FhirResource.resource_id) == resource_id,
    )
    if version is None:
        query = query.where(col(FhirResource.is_current).is_(True))
    else:
        query = query.where(col(FhirResource.version_id) == version)
    row = session.scalars(query).first()
    if row is None:
        what = f"{resource_type}/{resource_id}" + (f"/_history/{version}" if version else "")
        raise NotFound(f"{what} not found")
    return row


def _resource_response(row: FhirResource, request: Request) -> Response:
    etag = f'W/"{row.version_id}"'
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(row.last_updated, usegmt=True),
        "Content-Location": f"{row.resource_type}/{row.resource_id}/_history/{row.version_id}",
    }
    wanted = request.headers.get("if-none-match", "")
    tags = {t.strip().removeprefix("W/") for t in wanted.split(",") if t.strip()}
    if wanted.strip() == "*" or f'"{row.version_id}"' in tags:
        return Response(status_code=304, headers=headers)
    return fhir_json(row.content, 200, headers)


def _entry(base: str, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }


def _links(
    base: str,
    resource_type: str,
    items: list[tuple[str, str]],
    offset: int,
    count: int,
    total: int,
) -> list[dict[str, str]]:
    kept = [(k, v) for k, v in items if k not in ("_offset", "_count")]

    def url(at: int) -> str:
        query = urlencode([*kept, ("_count", str(count)), ("_offset", str(at))])
        return f"{base}/{resource_type}?{query}"

    links = [{"relation": "self", "url": url(offset)}, {"relation": "first", "url": url(0)}]
    if count and offset + count < total:
        links.append({"relation": "next", "url": url(offset + count)})
    if count and offset > 0:
        links.append({"relation": "previous", "url": url(max(0, offset - count))})
    return links
