"""The work queue's table. See :mod:`xraygate.core.queue` for the protocol around it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from xraygate.core.models.base import utcnow
from xraygate.core.states import JobState as JobState  # re-exported


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("kind", "dedupe_key", name="uq_jobs_kind_dedupe"),
        Index("ix_jobs_claim", "state", "kind", "priority", "available_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    state: str = Field(default=JobState.PENDING, max_length=16)
    priority: int = Field(default=0, description="Higher runs first.")
    dedupe_key: str = Field(max_length=200)
    study_uid: str | None = Field(default=None, max_length=64, index=True)
    instance_uid: str | None = Field(default=None, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    attempts: int = 0
    max_attempts: int = 5
    available_at: datetime = Field(default_factory=utcnow)
    lease_expires_at: datetime | None = None
    locked_by: str | None = Field(default=None, max_length=100)
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
