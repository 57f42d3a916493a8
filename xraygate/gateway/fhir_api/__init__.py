"""The FHIR R4 read API under ``/fhir``: ``capability`` (``/fhir/metadata`` and our CodeSystem:
public), ``routes`` (read, vread, history, search; audited), ``search`` (query string to SQL) and
``params`` (the search parameters served, the one table both ``search`` and ``capability``
read).

``public_router`` needs no token; the gateway includes ``read_router`` behind its auth; ``router``
is both (tests mount it alone)."""

from fastapi import APIRouter

from xraygate.gateway.fhir_api import capability, routes

public_router = capability.router  # before /fhir/{resource_type}
read_router = routes.router
router = APIRouter()
router.include_router(public_router)
router.include_router(read_router)

__all__ = ["public_router", "read_router", "router"]
