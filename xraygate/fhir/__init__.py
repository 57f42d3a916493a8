"""FHIR R4 resources for study results: builders, validation, the resource store and push."""
