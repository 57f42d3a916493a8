"""The durable ingest path every receiver shares (DICOM C-STORE SCP, DICOMweb STOW-RS).

A receiver spools the object to a file (hashing it as it writes, ideally), describes it in a
:class:`Received` and calls :meth:`Ingestor.ingest`, which answers an :class:`IngestResult`
with a DICOM :class:`Status` (the SCP answers it as is; STOW-RS maps it to HTTP). Success means
the object's bytes and its journal record are durable: it will be indexed and scored even if
the process is killed right after.

- :mod:`.status`: the DICOM statuses (``Status`` IntEnum).
- :mod:`.header`: parse the header once from the spool, validate, the index record's values.
- :mod:`.journal`: the fsynced ingest journal (group fsync, start-up recovery).
- :mod:`.indexer`: batch commits of index rows + ``infer`` jobs with SQLAlchemy Core.
- :mod:`.ingestor`: the :class:`Ingestor` tying them together.
"""

from xraygate.core.ingest.header import Received
from xraygate.core.ingest.ingestor import Ingestor, IngestResult
from xraygate.core.ingest.status import Status

__all__ = ["IngestResult", "Ingestor", "Received", "Status"]
