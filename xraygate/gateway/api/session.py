"""Who am I, and the API description: for any authenticated caller."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from xraygate.gateway.deps import PrincipalDep, current_principal
from xraygate.gateway.errors import JsonRoute

router = APIRouter(prefix="/api", tags=["session"], route_class=JsonRoute)


@router.get("/me")
def me(principal: PrincipalDep) -> dict[str, Any]:
    """The authenticated caller and its roles."""
    return {
        "subject": principal.subject,
        "roles": sorted(principal.roles),
        "method": principal.method,
        "fhir_types": sorted(principal.fhir_types),
    }


@router.get("/openapi.json", dependencies=[Depends(current_principal)])
def openapi(request: Request) -> dict[str, Any]:
    """This API's OpenAPI description."""
    return request.app.openapi()  # type: ignore[no-any-return]
