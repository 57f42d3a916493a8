"""DICOMweb under ``/dicomweb`` (PS3.18): QIDO-RS and WADO-RS over the studies we hold, STOW-RS
into the same durable ingest path as the C-STORE SCP.

- :mod:`.qido` answers searches from the index (DICOM JSON);
- :mod:`.routes` serves QIDO-RS, WADO-RS (instances byte for byte as stored, metadata, rendered
  frames) to clinicians and admins, every call audited;
- :mod:`.stow` takes STOW-RS from the ``modality`` role (or an API key with that role).
"""
