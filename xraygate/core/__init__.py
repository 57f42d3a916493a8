"""Shared foundations: settings, database models, object store, work queue and errors.

Every service subpackage (``dicom_scp``, ``inference``, ``fhir``, ``hl7``, ``anonymizer``,
``gateway``) imports from here and never from each other.
"""
