"""DICOM C-STORE SCP: receives studies from modalities and PACS into the object store.

- :mod:`.status`: re-exports ``Status`` from :mod:`xraygate.core.ingest.status`.
- the ingest itself (store, journal, index, ``infer`` job) is :mod:`xraygate.core.ingest`.
- :mod:`.server`: the pynetdicom application entity and its event handlers.
- :mod:`.sender`: a C-STORE SCU (``xraygate send``).
"""
