"""What a route depends on, each built once per app: settings, the database, the job queue, the
object store, the caller (``PrincipalDep``, ``require(Role)``), and the audit flag.

Routes write inside ``with db.write_session(engine)`` in their own body (the transaction commits
before the answer leaves, in the thread that holds SQLite's write lock); reads take ``ReadDb``.
The cheap dependencies are ``async`` so that they run without a hop to the thread pool.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, TypeGuard, TypeVar

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from xraygate.core import db
from xraygate.core.config import Settings, get_settings
from xraygate.core.queue import JobQueue
from xraygate.core.storage import ObjectStore, store_from_settings
from xraygate.gateway.auth import (
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    Authenticator,
    Principal,
    Role,
)
from xraygate.gateway.auth.scopes import Interaction
from xraygate.gateway.errors import Forbidden, Unauthorized

T = TypeVar("T")
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _per_app(request: Request, name: str, build: Callable[[], T]) -> T:
    """``request.app.state.<name>``, built on first use."""
    value = getattr(request.app.state, name, None)
    if value is None:
        value = build()
        setattr(request.app.state, name, value)
    return value


# --- database, queue, object store -------------------------------------------------------------


async def engine(settings: SettingsDep) -> Engine:
    return db.get_engine(settings.resolved_database_url)


EngineDep = Annotated[Engine, Depends(engine)]


def read_db(engine: EngineDep) -> Iterator[Session]:
    """A read session for the request."""
    with db.read_session(engine) as session:
        yield session


ReadDb = Annotated[Session, Depends(read_db)]


async def job_queue(request: Request, settings: SettingsDep) -> JobQueue:
    return _per_app(request, "queue", lambda: JobQueue.from_settings(settings))


QueueDep = Annotated[JobQueue, Depends(job_queue)]


def object_store(request: Request, settings: SettingsDep) -> ObjectStore:
    """One store per app (an S3 client is reused across requests)."""
    return _per_app(request, "store", lambda: store_from_settings(settings))


StoreDep = Annotated[ObjectStore, Depends(object_store)]


# --- the caller ----------------------------------------------------------------------------------

bearer_scheme = HTTPBearer(auto_error=False, description="OAuth2 access token (JWT)")
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Static API key of a system client"
)


async def authenticator(request: Request, settings: SettingsDep) -> Authenticator:
    return _per_app(request, "authenticator", lambda: Authenticator.from_settings(settings))


def current_principal(
    request: Request,
    auth: Annotated[Authenticator, Depends(authenticator)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal:
    """The authenticated caller (bearer JWT, API key or session cookie, in that order); 401
    without a valid credential, 403 for an unsafe method through a cookie without its CSRF."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    if bearer is not None:
        principal = auth.verify_token(bearer.credentials)
    elif api_key:
        principal = auth.verify_api_key(api_key)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        principal = auth.verify_session(cookie)
        if request.method not in SAFE_METHODS and not hmac.compare_digest(
            request.headers.get(CSRF_HEADER, ""), principal.csrf
        ):
            raise Forbidden("missing or wrong CSRF token")
    else:
        raise Unauthorized("authentication required")
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting callers with any of ``roles`` (403 otherwise); it returns the
    caller: ``Annotated[Principal, Depends(require(Role.ADMIN))]``."""

    async def check(principal: PrincipalDep) -> Principal:
        if not principal.has(*roles):
            raise Forbidden(f"requires role {' or '.join(roles)}")
        return principal

    check.__name__ = f"require_{'_or_'.join(roles)}"
    return check


async def require_fhir_reader(request: Request, principal: PrincipalDep) -> Principal:
    """``ehr`` or ``admin``, bounded by the token's SMART scopes: here the resource type and the
    interaction (``read`` with an id, else ``search``); the routes check every resource they
    return as well (``FhirAccess.permits``)."""
    if not principal.has(Role.EHR, Role.ADMIN):
        raise Forbidden("requires role ehr or admin")
    resource_type = request.path_params.get("resource_type")
    interaction: Interaction = "read" if "resource_id" in request.path_params else "search"
    if not principal.may_read_fhir(resource_type, interaction):
        raise Forbidden(f"token scopes do not allow {interaction} of {resource_type}")
    return principal


# --- the audit flag ------------------------------------------------------------------------------


async def audited() -> None:
    """Does nothing when called: its presence among a route's dependencies is the flag."""


#: Declared on a router (``APIRouter(dependencies=[AUDITED])``) or a route, never at
#: ``include_router``: every call of such a route (whatever its outcome) leaves an audit record.
AUDITED: DependsParam = Depends(audited)


def is_audited(route: object) -> TypeGuard[APIRoute]:
    """Whether ``route`` (a request's ``scope["route"]``) carries the audit flag."""
    return isinstance(route, APIRoute) and any(d.dependency is audited for d in route.dependencies)
