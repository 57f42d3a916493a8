"""API documentation a person can open: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, for any
authenticated caller (a browser without a session goes to the login page first), over the
token-protected ``/api/openapi.json``.

The JavaScript and CSS are served from this process (``/docs/assets``): they come from the
``fastapi-offline`` wheel (MIT), which ships Swagger UI and ReDoc's standalone builds, so no page
loads anything from a CDN.

:func:`document_errors` adds to every route of the OpenAPI description the refusals it really
answers, with their body: ``{"detail": ...}`` (:class:`ErrorBody`) on the JSON APIs, a FHIR
OperationOutcome on ``/fhir``. A route's refusals are found from its dependencies (a caller is
required: 401, 403) and from the :class:`~xraygate.gateway.errors.GatewayError` classes its
endpoint raises (found in its source), plus 422 where it takes parameters or a body, and 413
on every operation that carries a body (POST, PUT, PATCH, or a declared request body): the body
limit (:mod:`xraygate.gateway.middleware.limits`) refuses those before any route runs.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from xraygate.gateway import errors
from xraygate.gateway.deps import current_principal
from xraygate.gateway.web.render import HtmlRoute

OPENAPI_URL = "/api/openapi.json"
ASSETS = "/docs/assets"

router = APIRouter(route_class=HtmlRoute, include_in_schema=False)


def assets_dir() -> Path:
    import importlib

    package = importlib.import_module("fastapi_offline")  # the wheel that ships the assets
    return Path(str(package.__file__)).parent / "static"


def mount_assets(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")


# The gateway's CSP allows no inline script; these two pages run only files from this origin.
# Swagger UI and ReDoc set element styles from JavaScript, and ReDoc's search runs in a blob:
# worker, so these pages (only) allow inline styles and blob: workers.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; worker-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_SWAGGER = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xraygate API - Swagger UI</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
<link rel="icon" href="{ASSETS}/favicon.png"></head>
<body><div id="swagger-ui" data-openapi="{OPENAPI_URL}"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script></body></html>
"""
_REDOC = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xraygate API - ReDoc</title>
<link rel="icon" href="{ASSETS}/favicon.png"></head>
<body><redoc spec-url="{OPENAPI_URL}"></redoc>
<script src="{ASSETS}/redoc.standalone.js"></script></body></html>
"""


@router.get("/docs", dependencies=[Depends(current_principal)])
def swagger_ui() -> HTMLResponse:
    """Swagger UI over this API's OpenAPI description."""
    return HTMLResponse(_SWAGGER, headers={"Content-Security-Policy": DOCS_CSP})


@router.get("/redoc", dependencies=[Depends(current_principal)])
def redoc() -> HTMLResponse:
    """ReDoc over this API's OpenAPI description."""
    return HTMLResponse(_REDOC, headers={"Content-Security-Policy": DOCS_CSP})


# --- the error responses of each route ----------------------------------------------------------


class ErrorBody(BaseModel):
    """The body of every refusal of the JSON APIs."""

    detail: str


class OutcomeIssue(BaseModel):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str
    diagnostics: str


class OperationOutcome(BaseModel):
    """The body of every refusal of the FHIR API (FHIR R4 OperationOutcome)."""

    resourceType: Literal["OperationOutcome"]  # noqa: N815 (the FHIR element name)
    issue: list[OutcomeIssue]


_DESCRIPTIONS = {
    400: "Bad request: invalid input",
    401: "Authentication required, or the credential was refused",
    403: "Authenticated, but without the role, scope or CSRF token this needs",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Invalid parameters or body",
    503: "A dependency (database, object store) is unavailable",
}


@functools.lru_cache(maxsize=4096)
def _raised_statuses(endpoint: Any, depth: int = 2) -> frozenset[int]:
    """Statuses of the GatewayError classes raised in the endpoint's source, or in the sources of
    the xraygate functions it calls (``depth`` levels down)."""
    try:
        source = inspect.getsource(endpoint)
    except (OSError, TypeError):
        return frozenset()
    classes = {cls.__name__: cls.status for cls in _gateway_errors()}
    found = {classes[name] for name in re.findall(r"raise (\w+)\(", source) if name in classes}
    if depth > 0:
        scope = getattr(endpoint, "__globals__", {})
        for name in set(re.findall(r"(?<![.\w])(\w+)\(", source)):
            callee = scope.get(name)
            if inspect.isfunction(callee) and callee.__module__.startswith("xraygate."):
                found |= _raised_statuses(callee, depth - 1)
    return frozenset(found)


@functools.lru_cache(maxsize=1)
def _gateway_errors() -> list[type[errors.GatewayError]]:
    found: list[type[errors.GatewayError]] = []
    pending: list[type[errors.GatewayError]] = [errors.GatewayError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _needs_caller(route: Any) -> bool:
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if dep.call is current_principal:
            return True
        stack.extend(dep.dependencies)
    return False


def _takes_input(route: Any) -> bool:
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if dep.query_params or dep.path_params or dep.body_params or dep.header_params:
            return True
        stack.extend(dep.dependencies)
    return False


BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def carries_body(method: str, operation: dict[str, Any]) -> bool:
    """Whether an operation takes a request body (so the body limit's 413 applies to it)."""
    return method.upper() in BODY_METHODS or "requestBody" in operation


def route_errors(route: Any) -> set[int]:
    """The refusal statuses ``route`` (an APIRoute or its context) answers."""
    statuses = set(_raised_statuses(route.endpoint))
    if _needs_caller(route):
        statuses |= {401, 403}
    if _takes_input(route):
        statuses.add(422)
    statuses.discard(500)
    return statuses


def document_errors(app: FastAPI, body_limits: Mapping[str, str] | None = None) -> None:
    """Make ``app.openapi()`` list each route's refusals (status, description, body model);
    ``body_limits``: the setting that limits bodies under each path prefix (as the app's
    :class:`~xraygate.gateway.middleware.limits.BodyLimitMiddleware` has them)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in (ErrorBody, OperationOutcome):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(body.pop("$defs", {}))
            schemas[model.__name__] = body
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            if isinstance(route, APIRoute) and context.include_in_schema:
                _document_route(spec, context, route, dict(body_limits or {}))
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _error_content(route: APIRoute) -> dict[str, Any]:
    """The body of ``route``'s refusals: an error page on a page, an OperationOutcome on the FHIR
    API, ``{"detail": ...}`` elsewhere."""
    if isinstance(route, HtmlRoute):
        return {"text/html": {"schema": {"type": "string"}}}
    name, media = (
        ("OperationOutcome", errors.FHIR_JSON)
        if isinstance(route, errors.FhirRoute)
        else ("ErrorBody", "application/json")
    )
    return {media: {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _document_route(
    spec: dict[str, Any], context: Any, route: APIRoute, body_limits: dict[str, str]
) -> None:
    path = context.path_format or ""
    content = _error_content(route)
    for method in context.methods or ():
        op = spec["paths"].get(path, {}).get(method.lower())
        if op is None:
            continue
        for status in sorted(route_errors(context)):
            if status == 401 and isinstance(route, HtmlRoute):
                op["responses"]["303"] = dict(_LOGIN_REDIRECT)  # a page sends 401 to login
                continue
            entry = op["responses"].setdefault(str(status), {})
            entry.setdefault("description", _DESCRIPTIONS.get(status, "Refused"))
            entry["content"] = content
        if carries_body(method, op):
            setting = next(
                (name for prefix, name in body_limits.items() if path.startswith(prefix)),
                "http_max_body_bytes",
            )
            _document_413(op, path, setting)


_LOGIN_REDIRECT: dict[str, Any] = {
    "description": "Not signed in, or the credential was refused: to the login page, which "
    "comes back here after it",
    "headers": {
        "Location": {"description": "/login?next=<this path>", "schema": {"type": "string"}}
    },
}


def _document_413(op: dict[str, Any], path: str, setting: str) -> None:
    """The body limit's refusal, in the body the middleware sends on ``path``."""
    name, media = (
        ("OperationOutcome", errors.FHIR_JSON)
        if errors.answers_fhir(path)
        else ("ErrorBody", "application/json")
    )
    entry = op["responses"].setdefault("413", {})
    entry["description"] = f"{_DESCRIPTIONS[413]}: over XRAYGATE_{setting.upper()} bytes"
    entry["content"] = {media: {"schema": {"$ref": f"#/components/schemas/{name}"}}}
