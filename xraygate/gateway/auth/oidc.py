"""OpenID Connect login (authorization code flow with PKCE) for the pages.

:class:`OidcClient` talks to the identity provider named by ``XRAYGATE_OIDC_ISSUER``:

1. :meth:`~OidcClient.begin`: the endpoints from ``<issuer>/.well-known/openid-configuration``
   (its ``issuer`` must be ours), a fresh ``state``, ``nonce`` and PKCE verifier kept in a
   short-lived signed cookie (:class:`~xraygate.gateway.auth.oidc_state.LoginState`), and the
   authorization URL (``code_challenge_method=S256``);
2. :meth:`~OidcClient.finish`: the code exchanged at the token endpoint (client secret, PKCE
   verifier), the ID token's signature checked against the provider's JWKS (asymmetric
   algorithms only), its ``iss``, ``aud`` (our client id), ``azp``, ``exp``/``iat``, ``nonce``
   and ``at_hash`` validated (Authlib's ``CodeIDToken``), the roles claim read from it or else
   from the userinfo endpoint (same ``sub``), mapped to our roles by ``XRAYGATE_OIDC_ROLE_MAP``.

The result is a :class:`Principal` for the existing browser session. Failures are
:class:`GatewayError` s with a text for people: 503 when the provider cannot be reached, 401 for
a sign-in that does not check out, 403 for a user with no mapped role. Tokens, codes and claims
never reach a log or an error text.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlsplit

import httpx
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt as jose_jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from xraygate.core.config import Settings, secret_value
from xraygate.core.errors import ConfigurationError
from xraygate.gateway.auth.oidc_state import LoginState
from xraygate.gateway.auth.principal import Principal, Role
from xraygate.gateway.errors import Forbidden, Unauthorized, Unavailable

log = logging.getLogger("xraygate.gateway.oidc")

#: ID token signature algorithms we accept (never ``none``, never a MAC keyed by the secret).
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
METADATA_SECONDS = 3600.0
HTTP_TIMEOUT = 10.0
LEEWAY_SECONDS = 60
MAPPABLE = frozenset({Role.ADMIN, Role.CLINICIAN})


def parse_role_map(entries: list[str]) -> dict[str, frozenset[Role]]:
    """``idp-value=role`` pairs; a value may be listed twice to grant both roles."""
    mapping: dict[str, set[Role]] = {}
    for entry in entries:
        value, sep, role = (part.strip() for part in entry.rpartition("="))
        if not sep or not value or role not in MAPPABLE:
            raise ConfigurationError(
                "XRAYGATE_OIDC_ROLE_MAP entries are idp-value=admin or idp-value=clinician"
            )
        mapping.setdefault(value, set()).add(Role(role))
    return {value: frozenset(roles) for value, roles in mapping.items()}


def _check_url(name: str, url: str) -> None:
    """https, or http to a loopback host (development and tests)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    loopback = host == "localhost"
    with contextlib.suppress(ValueError):
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigurationError(f"{name} must be an https URL (http only on loopback)")


def claim_values(claims: dict[str, Any], path: str) -> list[str]:
    """The strings at ``path`` (dots walk nested objects): a list, or a space-separated string."""
    value: Any = claims
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int)]
    return []


@dataclass
class OidcClient:
    """The relying party for one settings object; provider metadata and keys cached."""

    issuer: str
    client_id: str
    client_secret: str | None
    scopes: str
    roles_claim: str
    role_map: dict[str, frozenset[Role]]
    subject_claim: str
    redirect_url: str | None
    _metadata: dict[str, Any] | None = field(default=None, repr=False)
    _metadata_at: float = 0.0
    _keys: KeySet | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcClient | None:
        """The client, or None when no issuer is configured; refuses inconsistent settings."""
        if not settings.oidc_issuer:
            return None
        issuer = settings.oidc_issuer.rstrip("/")
        _check_url("XRAYGATE_OIDC_ISSUER", issuer)
        if not settings.oidc_client_id:
            raise ConfigurationError("XRAYGATE_OIDC_CLIENT_ID is required with an OIDC issuer")
        role_map = parse_role_map(settings.oidc_role_map)
        if not role_map:
            raise ConfigurationError(
                "XRAYGATE_OIDC_ROLE_MAP is required with an OIDC issuer (who is a clinician?)"
            )
        if "openid" not in settings.oidc_scopes.split():
            raise ConfigurationError("XRAYGATE_OIDC_SCOPES must include 'openid'")
        if settings.oidc_redirect_url:
            _check_url("XRAYGATE_OIDC_REDIRECT_URL", settings.oidc_redirect_url)
        return cls(
            issuer=issuer,
            client_id=settings.oidc_client_id,
            client_secret=secret_value(settings.oidc_client_secret),
            scopes=settings.oidc_scopes,
            roles_claim=settings.oidc_roles_claim,
            role_map=role_map,
            subject_claim=settings.oidc_subject_claim,
            redirect_url=settings.oidc_redirect_url,
        )

    # --- provider metadata and keys --------------------------------------------------------

    def _get_json(self, url: str, what: str, **kw: Any) -> dict[str, Any]:
        _check_url(what, url)
        try:
            with httpx.Client(timeout=HTTP_TIMEOUT) as http:
                response = http.get(url, **kw)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("OIDC %s unavailable: %s", what, type(exc).__name__)
            raise Unavailable(
                "The sign-in service (identity provider) cannot be reached. Try again shortly."
            ) from exc
        if not isinstance(body, dict):
            raise Unavailable("The identity provider answered something that is not JSON.")
        return body

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached for an hour)."""
        with self._lock:
            fresh = time.monotonic() - self._metadata_at < METADATA_SECONDS
            if self._metadata is not None and fresh:
                return self._metadata
        url = f"{self.issuer}/.well-known/openid-configuration"
        body = self._get_json(url, "discovery")
        if body.get("issuer") != self.issuer:
            log.error("OIDC discovery names another issuer than XRAYGATE_OIDC_ISSUER")
            raise Unavailable("The identity provider's configuration does not match ours.")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(body.get(key), str):
                raise Unavailable(f"The identity provider advertises no {key}.")
        with self._lock:
            self._metadata, self._metadata_at = body, time.monotonic()
        return body

    def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            jwks = self._get_json(self.metadata()["jwks_uri"], "jwks")
            try:
                self._keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError) as exc:
                raise Unavailable("The identity provider's signing keys are unreadable.") from exc
        return self._keys

    # --- the flow ------------------------------------------------------------------------------

    def begin(self, redirect_uri: str, next_url: str) -> tuple[str, LoginState]:
        """The authorization URL to send the browser to, and the state to keep in its cookie."""
        endpoint = self.metadata()["authorization_endpoint"]
        _check_url("authorization_endpoint", endpoint)
        state = LoginState(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(64),
            next=next_url,
        )
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.scopes,
            "state": state.state,
            "nonce": state.nonce,
            "code_challenge": create_s256_code_challenge(state.verifier),
            "code_challenge_method": "S256",
        }
        return str(add_params_to_uri(endpoint, params)), state

    def finish(self, code: str, redirect_uri: str, state: LoginState) -> Principal:
        """Exchange ``code``, validate the ID token, map the roles: the signed-in user."""
        tokens = self._exchange(code, redirect_uri, state.verifier)
        claims = self.validate_id_token(tokens["id_token"], state.nonce, tokens["access_token"])
        values = claim_values(claims, self.roles_claim)
        if not values and self.roles_claim not in claims:
            values = claim_values(self._userinfo(tokens["access_token"], claims), self.roles_claim)
        roles = frozenset().union(*(self.role_map.get(v, frozenset()) for v in values))
        subject = claims.get(self.subject_claim)
        subject = subject if isinstance(subject, str) and subject else str(claims["sub"])
        if not roles:
            log.warning("OIDC sign-in refused: no mapped role (sub %s)", claims["sub"])
            raise Forbidden(
                f"You signed in as {subject}, but your account has no xraygate role. "
                "Ask your administrator for the clinician or admin role."
            )
        log.info("OIDC sign-in: %s as %s", subject, "+".join(sorted(roles)))
        return Principal(subject[:200], roles, "oidc")

    def _exchange(self, code: str, redirect_uri: str, verifier: str) -> dict[str, str]:
        metadata = self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers: dict[str, str] = {}
        methods = metadata.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        if self.client_secret is None:
            form["client_id"] = self.client_id
        elif "client_secret_basic" in methods:
            headers["Authorization"] = _basic(self.client_id, self.client_secret)
        else:
            form |= {"client_id": self.client_id, "client_secret": self.client_secret}
        _check_url("token_endpoint", metadata["token_endpoint"])
        try:
            with httpx.Client(timeout=HTTP_TIMEOUT) as http:
                response = http.post(metadata["token_endpoint"], data=form, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("OIDC token endpoint unavailable: %s", type(exc).__name__)
            raise Unavailable(
                "The sign-in service (identity provider) cannot be reached. Try again shortly."
            ) from exc
        body = _json_or_empty(response)
        if response.status_code != 200:
            error = str(body.get("error", response.status_code))[:64]
            log.warning("OIDC code exchange refused: %s", error)
            raise Unauthorized(f"The identity provider refused the sign-in ({error}).")
        tokens = {k: body.get(k) for k in ("id_token", "access_token")}
        if not all(isinstance(v, str) and v for v in tokens.values()):
            raise Unauthorized("The identity provider returned no ID token.")
        return tokens  # type: ignore[return-value]

    def validate_id_token(self, id_token: str, nonce: str, access_token: str) -> dict[str, Any]:
        """The ID token's claims once its signature, issuer, audience, times and nonce hold."""
        advertised = self.metadata().get("id_token_signing_alg_values_supported", ["RS256"])
        algorithms = [a for a in advertised if a in SIGNING_ALGORITHMS]
        registry = JWSRegistry(algorithms=algorithms or ["RS256"], strict_check_header=False)
        try:
            try:
                token = jose_jwt.decode(id_token, self._key_set(), registry=registry)
            except InvalidKeyIdError:  # the provider rotated its keys
                token = jose_jwt.decode(id_token, self._key_set(refresh=True), registry=registry)
            claims = CodeIDToken(
                token.claims,
                token.header,
                {
                    "iss": {"essential": True, "value": self.issuer},
                    "aud": {"essential": True, "value": self.client_id},
                    "sub": {"essential": True},
                },
                {"nonce": nonce, "client_id": self.client_id, "access_token": access_token},
            )
            claims.validate(leeway=LEEWAY_SECONDS)
        except (JoseError, ValueError, TypeError) as exc:
            reason = str(getattr(exc, "error", None) or type(exc).__name__)
            if claim := getattr(exc, "claim", None):  # the claim's name, never its value
                reason = f"{reason}: {claim}"
            log.warning("OIDC ID token refused: %s", reason)
            raise Unauthorized(f"The sign-in could not be verified (ID token: {reason}).") from exc
        return dict(claims)

    def _userinfo(self, access_token: str, id_claims: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.metadata().get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return {}
        info = self._get_json(
            endpoint, "userinfo", headers={"Authorization": f"Bearer {access_token}"}
        )
        if info.get("sub") != id_claims["sub"]:
            raise Unauthorized("The identity provider's userinfo is for another user.")
        return info

    def logout_url(self, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout at the provider, when it advertises ``end_session_endpoint``."""
        try:
            endpoint = self.metadata().get("end_session_endpoint")
        except Unavailable:
            return None
        if not isinstance(endpoint, str):
            return None
        params = {"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        return str(add_params_to_uri(endpoint, params))


def _basic(client_id: str, secret: str) -> str:
    """``client_secret_basic``: both parts form-urlencoded first (RFC 6749 section 2.3.1)."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return f"Basic {base64.b64encode(pair).decode()}"


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
