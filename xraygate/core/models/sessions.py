"""Browser sessions ended before their expiry (logout): the gateway refuses a session cookie
whose ``sid`` is listed here. Rows are useless once the cookie has expired and are purged then."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from xraygate.core.models.base import utcnow


class RevokedSession(SQLModel, table=True):
    __tablename__ = "revoked_sessions"

    sid: str = Field(primary_key=True, max_length=64, description="the cookie's session id")
    expires_at: datetime = Field(index=True, description="the cookie's own expiry")
    revoked_at: datetime = Field(default_factory=utcnow)
