"""DICOM C-STORE SCP: receives studies from modalities and PACS into the object store.

- :mod:`.status`: the DICOM statuses we answer, as a ``Status`` IntEnum.
- :mod:`.ingest`: one received object -> store + index rows + ``infer`` job (no pynetdicom here).
- :mod:`.server`: the pynetdicom application entity and its event handlers.
- :mod:`.sender`: a C-STORE SCU (``xraygate send``).
"""
