"""The DICOM statuses the SCP answers: they live in :mod:`xraygate.core.ingest.status`, shared
with every receiver (DICOMweb STOW-RS maps them to HTTP)."""

from __future__ import annotations

from xraygate.core.ingest.status import Status

__all__ = ["Status"]
