"""Database models. Each area owns one module; importing this package registers every table.

- :mod:`.index`: the DICOM index (Patient / Study / Series / Instance), written by the SCP.
- :mod:`.jobs`: the durable work queue's ``Job`` table.
- :mod:`.results`: model versions and inference results.
- :mod:`.deid`: clinician feedback, de-identified exports and quarantine.
- :mod:`.delivery`: stored FHIR resources and the delivery outbox.
- :mod:`.audit`: the audit trail of patient-data access (gateway).
- :mod:`.sessions`: browser sessions revoked at logout (gateway).
"""

from xraygate.core.models.audit import AuditRecord
from xraygate.core.models.base import utcnow
from xraygate.core.models.deid import (
    DeidDecision,
    DeidExport,
    DeidQuarantine,
    Feedback,
)
from xraygate.core.models.delivery import (
    Channel,
    DeliveryStream,
    FhirResource,
    OutboxMessage,
    OutboxState,
)
from xraygate.core.models.index import Instance, Patient, Series, Study
from xraygate.core.models.jobs import Job, JobState
from xraygate.core.models.results import (
    Category,
    InstanceResult,
    ModelState,
    ModelVersion,
    StudyResult,
)
from xraygate.core.models.sessions import RevokedSession

__all__ = [
    "AuditRecord",
    "Category",
    "Channel",
    "DeidDecision",
    "DeidExport",
    "DeidQuarantine",
    "DeliveryStream",
    "Feedback",
    "FhirResource",
    "Instance",
    "InstanceResult",
    "Job",
    "JobState",
    "ModelState",
    "ModelVersion",
    "OutboxMessage",
    "OutboxState",
    "Patient",
    "RevokedSession",
    "Series",
    "Study",
    "StudyResult",
    "utcnow",
]
