"""The gateway's refusals: one :class:`GatewayError` family, answered in the body a router speaks.

Routes raise a :class:`GatewayError`, never FastAPI's ``HTTPException``; the framework's own
refusals (an unknown path, a wrong method) become one here. A router chooses how its refusals read
with its ``route_class``:

- :class:`JsonRoute`: ``{"detail": "..."}`` (the APIs, the probes);
- :class:`FhirRoute`: a FHIR OperationOutcome (the FHIR API), built by :func:`operation_outcome`;
- ``HtmlRoute`` (``web/``): the error page, or a redirect to the login page when 401.

A path that no route serves answers like the routes sharing its first segment (``/fhir/...`` as
FHIR, ``/api/...`` as JSON), like JSON under a mount (``/static``), else like the ``fallback``
route class given to :func:`install`. Every 401 and 403 is counted in
``xraygate_auth_failures_total``.

::

    XraygateError (core/errors.py)
    └── GatewayError          a request refused: HTTP status, FHIR issue code, detail
        ├── BadRequest        400 invalid
        │   └── SearchError   400 a FHIR search the server cannot run as asked
        ├── Unauthorized      401 login: no credential, or one refused
        ├── Forbidden         403 forbidden: authenticated, without the role or scope
        ├── NotFound          404 not-found
        ├── NotAcceptable     406 not-supported: no answer in a media type the caller accepts
        ├── Conflict          409 conflict
        ├── Unprocessable     422 processing
        └── Unavailable       503 transient
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import Mount

from xraygate.core import metrics
from xraygate.core.errors import XraygateError

FHIR_JSON = "application/fhir+json"
#: FHIR issue codes of the framework's refusals; any other status reads "processing".
_FRAMEWORK_CODES = {401: "login", 403: "forbidden", 404: "not-found"}


class GatewayError(XraygateError):
    """A request refused with ``status``; ``code`` is the FHIR issue type, ``detail`` the text
    for people (never PHI), ``headers`` go on the response."""

    status: int = 500
    code: str = "exception"

    def __init__(
        self, detail: str, *, code: str = "", headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.code
        self.headers = dict(headers or {})

    @classmethod
    def from_http(cls, exc: HTTPException) -> GatewayError:
        """The framework's own refusal (unknown path, wrong method) as one of ours."""
        code = _FRAMEWORK_CODES.get(exc.status_code, "processing")
        error = cls(str(exc.detail), code=code, headers=exc.headers)
        error.status = exc.status_code
        return error


class BadRequest(GatewayError):
    status, code = 400, "invalid"


class SearchError(BadRequest):
    """A FHIR search the server cannot run as asked (``code`` "not-supported" when it names
    something we do not serve)."""


class Unauthorized(GatewayError):
    """No credential, or one refused; the answer carries the Bearer challenge."""

    status, code = 401, "login"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="xraygate"'})


class Forbidden(GatewayError):
    status, code = 403, "forbidden"


class NotFound(GatewayError):
    status, code = 404, "not-found"


class NotAcceptable(GatewayError):
    """The client accepts no format we serve (FHIR: ``_format=xml``; WADO-RS: another transfer
    syntax than the stored one)."""

    status, code = 406, "not-supported"


class Conflict(GatewayError):
    status, code = 409, "conflict"


class Unprocessable(GatewayError):
    status, code = 422, "processing"


class Unavailable(GatewayError):
    status, code = 503, "transient"


# --- bodies --------------------------------------------------------------------------------------


def fhir_json(
    body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A FHIR resource as compact ``application/fhir+json``."""
    content = json.dumps(body, separators=(",", ":"))
    return Response(content, status_code=status, media_type=FHIR_JSON, headers=headers or None)


def answers_fhir(path: str) -> bool:
    """Whether a refusal made before any route runs (the body limit's 413) is an
    OperationOutcome on ``path`` (the FHIR API's), else ``{"detail": ...}``."""
    return path.startswith("/fhir")


def operation_outcome(code: str, diagnostics: str) -> dict[str, Any]:
    """The OperationOutcome of one error (the only place one is built)."""
    issue = {"severity": "error", "code": code, "diagnostics": diagnostics}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class GatewayRoute(APIRoute):
    """A route whose :class:`GatewayError` refusals answer in :meth:`error_body`."""

    @classmethod
    def error_body(cls, request: Request, error: GatewayError) -> Response:
        raise NotImplementedError

    @classmethod
    def refuse(cls, request: Request, error: GatewayError) -> Response:
        if error.status in (401, 403):
            reason = "unauthenticated" if error.status == 401 else "forbidden"
            metrics.AUTH_FAILURES.labels(reason).inc()
        return cls.error_body(request, error)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except GatewayError as error:
                return self.refuse(request, error)

        return answer


class JsonRoute(GatewayRoute):
    @classmethod
    def error_body(cls, request: Request, error: GatewayError) -> Response:
        headers = error.headers or None
        return JSONResponse({"detail": error.detail}, error.status, headers=headers)


class FhirRoute(GatewayRoute):
    @classmethod
    def error_body(cls, request: Request, error: GatewayError) -> Response:
        body = operation_outcome(error.code, error.detail)
        return fhir_json(body, error.status, error.headers)


# --- the app's handler ---------------------------------------------------------------------------


def install(app: FastAPI, fallback: type[GatewayRoute]) -> None:
    """Answer the framework's refusals, and a GatewayError from outside a GatewayRoute, like the
    route or the path they concern."""

    async def refuse(request: Request, exc: Exception) -> Response:
        if isinstance(exc, GatewayError):
            error = exc
        else:
            assert isinstance(exc, HTTPException)
            error = GatewayError.from_http(exc)
        return _route_class(request, fallback).refuse(request, error)

    app.add_exception_handler(HTTPException, refuse)
    app.add_exception_handler(GatewayError, refuse)


def _route_class(request: Request, fallback: type[GatewayRoute]) -> type[GatewayRoute]:
    route = request.scope.get("route")
    if isinstance(route, GatewayRoute):
        return type(route)
    by_segment = getattr(request.app.state, "error_routes", None)
    if by_segment is None:
        by_segment = request.app.state.error_routes = _route_classes(request.app)
    return by_segment.get(_first_segment(request.scope["path"]), fallback)


def _route_classes(app: FastAPI) -> dict[str, type[GatewayRoute]]:
    """First path segment -> the route class of the routes under it (JSON under a mount)."""
    out: dict[str, type[GatewayRoute]] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            out.setdefault(_first_segment(route.path), JsonRoute)
        elif isinstance(route, GatewayRoute) and context.path is not None:
            out.setdefault(_first_segment(context.path), type(route))
    return out


def _first_segment(path: str) -> str:
    return path.lstrip("/").partition("/")[0]
