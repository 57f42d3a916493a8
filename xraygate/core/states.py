"""The state and channel vocabularies stored in the database, importable without the models.

The ORM models (:mod:`xraygate.core.models`) re-export these; short read-only commands
(``xraygate status``/``results``) use them without loading SQLModel and every table.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    PENDING = "pending"  # waiting until available_at
    RUNNING = "running"  # claimed, lease until lease_expires_at
    DONE = "done"
    DEAD = "dead"  # attempts exhausted or permanent failure: needs a person


class OutboxState(StrEnum):
    PENDING = "pending"  # waiting for its turn or for a retry
    DELIVERED = "delivered"  # the peer accepted it (HL7 AA/CA, HTTP 2xx)
    DEAD = "dead"  # refused for good or attempts exhausted: needs a person


class Channel(StrEnum):
    HL7 = "hl7"  # ORU^R01 to the configured MLLP host
    HL7_ESCALATION = "hl7-escalation"  # high-risk ORU to the extra MLLP target
    WEBHOOK_ESCALATION = "webhook-escalation"  # high-risk JSON notification
    FHIR_PUSH = "fhir-push"  # transaction Bundle to the EHR's FHIR server
    PACS = "pacs"  # DICOM SR (and key image) to the PACS: C-STORE or STOW-RS
