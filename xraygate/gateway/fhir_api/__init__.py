"""The FHIR R4 read API under ``/fhir``."""

from xraygate.gateway.fhir_api.routes import router

__all__ = ["router"]
