"""The FHIR R4 read API under ``/fhir``: ``capability`` (``/fhir/metadata``), ``routes`` (read,
vread, history, search; audited), ``search`` (query string to SQL) and ``params`` (the search
parameters served, the one table both ``search`` and ``capability`` read)."""

from fastapi import APIRouter

from xraygate.gateway.fhir_api import capability, routes

router = APIRouter()
router.include_router(capability.router)  # before /fhir/{resource_type}
router.include_router(routes.router)

__all__ = ["router"]
