"""The :class:`Authenticator`: one per app, it turns a credential into a :class:`Principal`.

Credentials, in the order the gateway looks for them (``deps.current_principal``):

1. ``Authorization: Bearer <JWT>`` (:mod:`.tokens`);
2. ``X-API-Key: <key>``: a static key of a system client, compared by sha256 with the
   ``XRAYGATE_AUTH_API_KEYS`` entries ``name:role[+role]:sha256`` (:mod:`.keys`);
3. the browser session cookie set by the login page (:mod:`.sessions`).

A credential presented and refused raises :class:`~xraygate.gateway.errors.Unauthorized`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from xraygate.core.config import Settings
from xraygate.gateway.auth.keys import ApiKey, hash_api_key, parse_api_keys, session_key
from xraygate.gateway.auth.principal import Principal
from xraygate.gateway.auth.revocation import SessionRevocations
from xraygate.gateway.auth.sessions import SessionSigner
from xraygate.gateway.auth.tokens import BearerVerifier
from xraygate.gateway.errors import Unauthorized


@dataclass
class Authenticator:
    """Verifies credentials for one settings object (keys and JWKS loaded once)."""

    bearer: BearerVerifier
    sessions: SessionSigner
    api_keys: list[ApiKey] = field(default_factory=list)
    revocations: SessionRevocations | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        return cls(
            BearerVerifier.from_settings(settings),
            SessionSigner(session_key(settings), settings.session_hours),
            parse_api_keys(settings.auth_api_keys),
            SessionRevocations(settings.resolved_database_url),
        )

    def verify_token(self, token: str) -> Principal:
        return self.bearer.verify(token)

    def verify_api_key(self, key: str) -> Principal:
        digest = hash_api_key(key)
        for entry in self.api_keys:
            if hmac.compare_digest(digest, entry.sha256):
                return Principal(entry.name, entry.roles, "api-key")
        raise Unauthorized("unknown API key")

    def verify_credential(self, credential: str) -> Principal:
        """A pasted token or API key (the login page)."""
        credential = credential.strip()
        if credential.count(".") == 2:
            return self.verify_token(credential)
        return self.verify_api_key(credential)

    def issue_session(self, principal: Principal) -> tuple[str, int]:
        return self.sessions.issue(principal)

    def verify_session(self, value: str) -> Principal:
        principal = self.sessions.verify(value)
        sid = principal.session_id or ""
        if self.revocations is not None and self.revocations.is_revoked(sid):
            raise Unauthorized("session ended (logged out)")
        return principal

    def end_session(self, value: str) -> bool:
        """Logout: revoke the session cookie ``value`` server-side; False if it was not valid."""
        try:
            principal = self.sessions.verify(value)
        except Unauthorized:
            return False
        if self.revocations is None or not principal.session_id:
            return False
        self.revocations.revoke(principal.session_id, principal.expires_at or 0.0)
        return True
