"""Helpers shared by model modules."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Timezone-aware UTC now: every timestamp column is a SQLModel ``UTCDateTime``."""
    return datetime.now(UTC)
