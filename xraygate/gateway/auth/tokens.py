"""Bearer JWTs: verified against the HS256 shared key or a JWKS (file or URL; RS/ES/PS algorithms,
the key chosen by ``kid``), and minted for development with the shared key.

``iss``, ``aud``, ``exp`` and ``sub`` are required, ``nbf`` is honoured, ``alg: none`` and an
algorithm without a configured key (e.g. HS256 when only a JWKS is trusted) are never accepted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from xraygate.core.config import Settings
from xraygate.core.errors import ConfigurationError
from xraygate.core.secret_policy import check_secrets
from xraygate.gateway.auth.keys import shared_key
from xraygate.gateway.auth.principal import Principal, roles_from_claims
from xraygate.gateway.errors import Unauthorized

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384")


@dataclass
class BearerVerifier:
    """Verifies bearer JWTs for one settings object (keys and JWKS loaded once)."""

    settings: Settings
    hs_key: bytes | None = None
    jwks: jwt.PyJWKSet | None = None
    jwks_client: jwt.PyJWKClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BearerVerifier:
        verifier = cls(settings, hs_key=shared_key(settings))
        if settings.auth_jwks_file is not None:
            verifier.jwks = _load_jwks_file(settings.auth_jwks_file)
        if settings.auth_jwks_url:
            verifier.jwks_client = jwt.PyJWKClient(
                settings.auth_jwks_url, cache_keys=True, lifespan=300, timeout=10
            )
        return verifier

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("malformed token") from exc
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self.hs_key is not None:
            key = self.hs_key
        elif alg in ASYMMETRIC_ALGORITHMS and (self.jwks or self.jwks_client):
            key = self._signing_key(token, header.get("kid"))
        else:
            raise Unauthorized(f"token algorithm {alg!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.settings.auth_audience,
                issuer=self.settings.auth_issuer,
                leeway=self.settings.auth_leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {type(exc).__name__}") from exc
        self._check_lifetime(claims)
        roles, access = roles_from_claims(claims)
        return Principal(str(claims["sub"]), roles, "jwt", access, expires_at=claims["exp"])

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        """Refuse tokens living longer than ``XRAYGATE_AUTH_MAX_TOKEN_SECONDS``: from ``iat`` to
        ``exp`` when ``iat`` is there, and from now to ``exp`` in any case."""
        longest = self.settings.auth_max_token_seconds
        exp = float(claims["exp"])
        iat = claims.get("iat")
        if isinstance(iat, int | float) and exp - float(iat) > longest:
            raise Unauthorized("token lifetime exceeds the maximum accepted")
        if exp - time.time() > longest + self.settings.auth_leeway_seconds:
            raise Unauthorized("token lifetime exceeds the maximum accepted")

    def _signing_key(self, token: str, kid: str | None) -> Any:
        try:
            if self.jwks_client is not None:
                return self.jwks_client.get_signing_key_from_jwt(token).key
            assert self.jwks is not None
            if kid is None and len(self.jwks.keys) == 1:
                return self.jwks.keys[0].key
            return self.jwks[str(kid)].key
        except (jwt.PyJWTError, KeyError) as exc:
            raise Unauthorized("no matching signing key") from exc


def _load_jwks_file(path: Path) -> jwt.PyJWKSet:
    try:
        return jwt.PyJWKSet.from_json(path.read_text())
    except (OSError, jwt.PyJWTError) as exc:
        raise ConfigurationError(f"cannot read JWKS file {path}: {exc}") from exc


def mint_token(
    settings: Settings, roles: Iterable[str], subject: str, ttl_seconds: int, scope: str = ""
) -> str:
    """A development token signed with the HS256 shared key (``xraygate token create``)."""
    check_secrets(settings)
    if ttl_seconds > settings.auth_max_token_seconds:
        raise ConfigurationError(
            f"lifetime {ttl_seconds}s exceeds XRAYGATE_AUTH_MAX_TOKEN_SECONDS "
            f"({settings.auth_max_token_seconds:g}s)"
        )
    key = shared_key(settings)
    if key is None:
        raise ConfigurationError(
            "no shared key: set XRAYGATE_AUTH_SHARED_SECRET (a JWKS is configured)"
        )
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.auth_issuer,
        "aud": settings.auth_audience,
        "sub": subject,
        "roles": sorted(set(roles)),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
    }
    if scope:
        claims["scope"] = scope
    return jwt.encode(claims, key, algorithm="HS256")
