"""Browser sessions: the login page exchanges a pasted token or API key for a short-lived HS256
JWT in an HttpOnly cookie. It carries a CSRF value: unsafe methods (POST, ...) through the cookie
must send it back in the ``X-CSRF-Token`` header (the pages embed it). Its ``sid`` is what
logout revokes server-side (:mod:`.revocation`)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from xraygate.gateway.auth.principal import Principal, Role
from xraygate.gateway.auth.scopes import FhirAccess
from xraygate.gateway.errors import Unauthorized

SESSION_COOKIE = "xraygate_session"
SESSION_ISSUER = "xraygate-session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class SessionSigner:
    """Issues and verifies session cookie values with the session key."""

    key: bytes
    hours: float

    def issue(self, principal: Principal) -> tuple[str, int]:
        """A session cookie value for ``principal`` and its lifetime in seconds (never beyond
        the credential's own expiry)."""
        now = int(time.time())
        exp = now + int(self.hours * 3600)
        if principal.expires_at is not None:
            exp = min(exp, int(principal.expires_at))
        claims = {
            "iss": SESSION_ISSUER,
            "aud": SESSION_ISSUER,
            "sub": principal.subject,
            "roles": sorted(principal.roles),
            **principal.fhir.to_claims(),
            "via": principal.method,
            "csrf": secrets.token_urlsafe(24),
            "sid": secrets.token_urlsafe(18),
            "iat": now,
            "exp": exp,
        }
        return jwt.encode(claims, self.key, algorithm="HS256"), max(0, exp - now)

    def verify(self, value: str) -> Principal:
        try:
            claims = jwt.decode(
                value,
                self.key,
                algorithms=["HS256"],
                audience=SESSION_ISSUER,
                issuer=SESSION_ISSUER,
                options={"require": ["exp", "sub", "csrf", "sid"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid session") from exc
        return Principal(
            str(claims["sub"]),
            Role.parse(claims.get("roles", [])),
            "session",
            FhirAccess.from_session(claims),
            csrf=str(claims["csrf"]),
            expires_at=claims["exp"],
            session_id=str(claims["sid"]),
        )
