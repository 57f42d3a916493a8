"""The audit trail (written by ``gateway/``): one row per access to patient data.

Who (``actor``, ``auth_method``, ``roles``), what (``action``, ``method``, ``route``, ``path``,
``query``, ``study_uid``), when (``recorded_at``), from where (``source``, ``user_agent``) and
the outcome (``status``). Admins read it as FHIR AuditEvent resources. Rows are never updated.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from xraygate.core.models.base import utcnow


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    recorded_at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(default="", max_length=200, description="token subject / API key name")
    auth_method: str = Field(default="", max_length=16, description="jwt | api-key | session")
    roles: str = Field(default="", max_length=100, description="space-separated roles")
    action: str = Field(max_length=1, description="FHIR AuditEvent action: C R U D E")
    method: str = Field(max_length=8)
    route: str = Field(max_length=200, description="route template")
    path: str = Field(max_length=500)
    query: str = Field(default="", max_length=2000)
    study_uid: str | None = Field(default=None, max_length=64, index=True)
    source: str = Field(default="", max_length=64, description="client address")
    user_agent: str = Field(default="", max_length=200)
    status: int = Field(description="HTTP status answered")
