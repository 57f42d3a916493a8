"""Server-side revocation of browser sessions: logout lists the cookie's ``sid`` in
``revoked_sessions`` until the cookie would have expired anyway, and every request through a
session cookie is checked against that list (one primary-key lookup), so a copied cookie stops
working at logout, on every gateway replica sharing the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, delete
from sqlmodel import col

from xraygate.core import db
from xraygate.core.models import RevokedSession, utcnow


@dataclass(frozen=True)
class SessionRevocations:
    """The revocation list in the database at ``database_url``."""

    database_url: str

    @property
    def engine(self) -> Engine:
        return db.get_engine(self.database_url)

    def revoke(self, sid: str, expires_at: float) -> None:
        """List ``sid`` until ``expires_at`` (epoch seconds); purge entries already expired."""
        until = datetime.fromtimestamp(expires_at, UTC)
        with db.write_session(self.engine) as session:
            session.execute(delete(RevokedSession).where(col(RevokedSession.expires_at) < utcnow()))
            if session.get(RevokedSession, sid) is None:
                session.add(RevokedSession(sid=sid[:64], expires_at=until))

    def is_revoked(self, sid: str) -> bool:
        with db.read_session(self.engine) as session:
            return session.get(RevokedSession, sid[:64]) is not None
