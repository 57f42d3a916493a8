"""Results out: the FHIR resource store and the delivery outbox (written by ``fhir/`` and ``hl7/``,
read by ``gateway/`` and the ``outbox`` CLI).

``fhir_resources`` keeps every version of every FHIR resource we emit: one row per version, the
newest flagged ``is_current``. The search columns hold what the FHIR API searches on, so a search
is an indexed query that never parses JSON:

- token columns (``identifiers``, ``categories``, ``codes``, ``based_on``) hold ``system|code``
  tokens, each between TAB characters: ``"\\tsys|a\\tsys2|b\\t"``; see :func:`token_text`.
- ``refs`` holds ``param=Type/id`` tokens the same way (derived-from, device, result, ...).
- ``patient_ref`` is ``Patient/<id>`` (the subject), ``date`` the clinically relevant time.

``delivery_outbox`` holds each message to send (HL7 ORU, FHIR transaction Bundle, notification)
exactly as it goes on the wire, so a retry resends identical bytes with the same control ID.
Messages of one *stream* (channel + patient) carry increasing ``seq`` numbers and are sent in
that order; ``delivery_streams`` allocates the numbers and holds the per-stream send lease.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from xraygate.core.models.base import utcnow
from xraygate.core.states import Channel as Channel  # re-exported
from xraygate.core.states import OutboxState as OutboxState  # re-exported

# --- naming shared by the FHIR builders (fhir/) and the FHIR API (gateway/) -------------------
# (the codes a result is said with are xraygate.core.vocabulary's)
DICOM_UID_SYSTEM = "urn:dicom:uid"


def token_text(tokens: Iterable[str]) -> str:
    """Tokens joined for a token column: TAB before, between and after (empty when none)."""
    items = [t.replace("\t", " ") for t in tokens if t]
    return "\t" + "\t".join(items) + "\t" if items else ""


class FhirResource(SQLModel, table=True):
    """One version of one FHIR resource, with the columns the FHIR API searches on."""

    __tablename__ = "fhir_resources"
    __table_args__ = (
        UniqueConstraint("resource_type", "resource_id", "version_id", name="uq_fhir_version"),
        Index("ix_fhir_search", "resource_type", "is_current", "patient_ref", "date"),
        Index("ix_fhir_current_date", "resource_type", "is_current", "date"),
        Index("ix_fhir_read", "resource_type", "resource_id", "is_current"),
    )

    id: int | None = Field(default=None, primary_key=True)
    resource_type: str = Field(max_length=40)
    resource_id: str = Field(max_length=64)
    version_id: int = Field(description="meta.versionId, from 1")
    is_current: bool = Field(default=True, description="the newest version")
    last_updated: datetime = Field(default_factory=utcnow, description="meta.lastUpdated")
    content: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    patient_ref: str = Field(default="", max_length=100, description="Patient/<id>")
    identifiers: str = Field(default="", max_length=2000, description="system|value tokens")
    status: str = Field(default="", max_length=32)
    categories: str = Field(default="", max_length=1000, description="system|code tokens")
    codes: str = Field(default="", max_length=1000, description="system|code tokens")
    date: datetime | None = Field(default=None, description="effective / started time")
    based_on: str = Field(default="", max_length=1000, description="basedOn tokens")
    refs: str = Field(default="", max_length=2000, description="param=Type/id tokens")
    study_uid: str = Field(default="", max_length=64, index=True)


class DeliveryStream(SQLModel, table=True):
    """Sequence numbers and the send lease of one ordered stream (channel + patient)."""

    __tablename__ = "delivery_streams"
    __table_args__ = (UniqueConstraint("channel", "stream_key", name="uq_delivery_stream"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    stream_key: str = Field(max_length=200, description="the patient key")
    next_seq: int = Field(default=1)
    locked_by: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = None


class OutboxMessage(SQLModel, table=True):
    """One message to deliver, stored as sent on the wire."""

    __tablename__ = "delivery_outbox"
    __table_args__ = (
        UniqueConstraint("channel", "dedupe_key", name="uq_outbox_dedupe"),
        UniqueConstraint("channel", "stream_key", "seq", name="uq_outbox_seq"),
        Index("ix_outbox_state", "channel", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    stream_key: str = Field(max_length=200)
    seq: int
    dedupe_key: str = Field(max_length=200)
    control_id: str = Field(max_length=64, unique=True, description="HL7 MSH-10 / Bundle id")
    study_uid: str = Field(max_length=64, index=True)
    study_result_id: int | None = None
    revision: int = 1
    priority: int = 0
    content_type: str = Field(max_length=64)
    message: str = Field(sa_type=Text)
    state: str = Field(default=OutboxState.PENDING, max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=2000)
    response: str | None = Field(default=None, sa_type=Text, description="ACK / OperationOutcome")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None
