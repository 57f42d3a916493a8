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
endpoint raises (found in its source), plus 422 where it takes parameters or a body.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
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


@router.get("/docs", dependencies=[Depends(current_principal)])
def swagger_ui() -> HTMLResponse:
    """Swagger UI over this API's OpenAPI description."""
    return get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title="xraygate API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
    )


@router.get("/redoc", dependencies=[Depends(current_principal)])
def redoc() -> HTMLResponse:
    """ReDoc over this API's OpenAPI description."""
    return get_redoc_html(
        openapi_url=OPENAPI_URL,
        title="xraygate API",
        redoc_js_url=f"{ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS}/favicon.png",
        with_google_fonts=False,
    )


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


def _raised_statuses(endpoint: Any, depth: int = 2) -> set[int]:
    """Statuses of the GatewayError classes raised in the endpoint's source, or in the sources of
    the xraygate functions it calls (``depth`` levels down)."""
    try:
        source = inspect.getsource(endpoint)
    except (OSError, TypeError):
        return set()
    classes = {cls.__name__: cls.status for cls in _gateway_errors()}
    found = {classes[name] for name in re.findall(r"raise (\w+)\(", source) if name in classes}
    if depth > 0:
        scope = getattr(endpoint, "__globals__", {})
        for name in set(re.findall(r"(?<![.\w])(\w+)\(", source)):
            callee = scope.get(name)
            if inspect.isfunction(callee) and callee.__module__.startswith("xraygate."):
                found |= _raised_statuses(callee, depth - 1)
    return found


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


def route_errors(route: Any) -> set[int]:
    """The refusal statuses ``route`` (an APIRoute or its context) answers."""
    statuses = _raised_statuses(route.endpoint)
    if _needs_caller(route):
        statuses |= {401, 403}
    if _takes_input(route):
        statuses.add(422)
    statuses.discard(500)
    return statuses


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` list each route's refusals (status, description, body model)."""
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
            if not isinstance(route, APIRoute) or not context.include_in_schema:
                continue
            fhir = isinstance(route, errors.FhirRoute)
            name, media = (
                ("OperationOutcome", errors.FHIR_JSON)
                if fhir
                else ("ErrorBody", "application/json")
            )
            ref = {"$ref": f"#/components/schemas/{name}"}
            for method in context.methods or ():
                op = spec["paths"].get(context.path_format or "", {}).get(method.lower())
                if op is None:
                    continue
                for status in sorted(route_errors(context)):
                    entry = op["responses"].setdefault(str(status), {})
                    entry.setdefault("description", _DESCRIPTIONS.get(status, "Refused"))
                    entry["content"] = {media: {"schema": ref}}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
