"""Authentication and roles.

Credentials, in the order they are looked for:

1. ``Authorization: Bearer <JWT>``: verified against the configured JWKS (URL or file; RS/ES/PS
   algorithms, the key chosen by ``kid``) or the HS256 shared key; ``iss``, ``aud``, ``exp`` and
   ``sub`` are required, ``nbf`` is honoured, ``alg: none`` never accepted.
2. ``X-API-Key: <key>``: a static key of a system client, compared by sha256 with
   ``XRAYGATE_AUTH_API_KEYS`` entries ``name:role[+role]:sha256``.
3. The browser session cookie set by the login page: a short-lived HS256 JWT signed with the
   session key. Unsafe methods (POST, ...) through a cookie also need the ``X-CSRF-Token`` header
   carrying the session's CSRF value (the pages embed it).

Roles: ``admin`` (models, settings, dead-letters, audit), ``clinician`` (worklist, studies,
feedback), ``ehr`` (FHIR read). They come from a ``roles`` claim (a list or a space-separated
string) or from scopes (``scope``/``scp``): a role's name, ``xraygate/<role>``, or SMART-style
FHIR read scopes (``system/DiagnosticReport.read``, ``system/*.read``, ``user/*.read``,
SMART v2 ``.rs``) which grant ``ehr`` limited to the resource types they name.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from xraygate.core.config import Settings
from xraygate.core.errors import ConfigurationError
from xraygate.core.secret_files import secret_file

ROLES = ("admin", "clinician", "ehr")
ALL_TYPES = "*"
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384")
SESSION_COOKIE = "xraygate_session"
SESSION_ISSUER = "xraygate-session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SMART_READ = re.compile(r"^(?:system|user|patient)/(\*|[A-Z][A-Za-z]+)\.(?:read|rs|r|\*)$")

bearer_scheme = HTTPBearer(auto_error=False, description="OAuth2 access token (JWT)")
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Static API key of a system client"
)


class AuthError(Exception):
    """A credential was presented and refused (answered 401)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling, with which roles."""

    subject: str
    roles: frozenset[str]
    method: str  # jwt | api-key | session
    fhir_types: frozenset[str] = frozenset({ALL_TYPES})
    csrf: str = ""
    expires_at: float | None = None

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def may_read_fhir(self, resource_type: str | None) -> bool:
        if "admin" in self.roles or ALL_TYPES in self.fhir_types or resource_type is None:
            return True
        return resource_type in self.fhir_types


# --- claims to roles ---------------------------------------------------------------------------


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


def roles_from_claims(claims: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """Roles and the FHIR resource types readable, from ``roles`` and ``scope``/``scp``."""
    roles: set[str] = set()
    fhir_types: set[str] = set()
    explicit_ehr = False
    for word in _words(claims.get("roles")):
        if word in ROLES:
            roles.add(word)
            explicit_ehr |= word == "ehr"
    for scope in _words(claims.get("scope")) + _words(claims.get("scp")):
        name = scope.removeprefix("xraygate/")
        if name in ROLES:
            roles.add(name)
            explicit_ehr |= name == "ehr"
        elif match := _SMART_READ.match(scope):
            roles.add("ehr")
            fhir_types.add(match.group(1))
    if explicit_ehr or not fhir_types:
        fhir_types = {ALL_TYPES}
    return frozenset(roles), frozenset(fhir_types)


# --- keys --------------------------------------------------------------------------------------


def secret_from_file(settings: Settings, name: str) -> bytes:
    """A random key generated once into ``<data_dir>/<name>`` (mode 0600), then reused."""
    return secret_file(settings.data_dir / name, lambda: secrets.token_urlsafe(48))


def shared_key(settings: Settings) -> bytes | None:
    """The HS256 key for bearer tokens, or None when only a JWKS is trusted."""
    if settings.auth_shared_secret is not None:
        return settings.auth_shared_secret.get_secret_value().encode()
    if settings.auth_jwks_url or settings.auth_jwks_file:
        return None
    return secret_from_file(settings, "auth-secret")


def session_key(settings: Settings) -> bytes:
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode()
    return secret_from_file(settings, "session-secret")


@dataclass(frozen=True)
class ApiKey:
    name: str
    roles: frozenset[str]
    sha256: str


def parse_api_keys(entries: Iterable[str]) -> list[ApiKey]:
    keys = []
    for entry in entries:
        name, _, rest = entry.partition(":")
        role_text, _, digest = rest.partition(":")
        roles = frozenset(r for r in role_text.split("+") if r)
        if not name or not re.fullmatch(r"[0-9a-f]{64}", digest) or not roles <= set(ROLES):
            raise ConfigurationError(
                "XRAYGATE_AUTH_API_KEYS entries are name:role[+role]:sha256 (64 hex digits)"
            )
        keys.append(ApiKey(name, roles, digest))
    return keys


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# --- the authenticator -------------------------------------------------------------------------


@dataclass
class Authenticator:
    """Verifies credentials for one settings object (keys and JWKS loaded once)."""

    settings: Settings
    hs_key: bytes | None = None
    session: bytes = b""
    api_keys: list[ApiKey] = field(default_factory=list)
    _jwks: jwt.PyJWKSet | None = None
    _jwks_client: jwt.PyJWKClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        auth = cls(
            settings,
            hs_key=shared_key(settings),
            session=session_key(settings),
            api_keys=parse_api_keys(settings.auth_api_keys),
        )
        if settings.auth_jwks_file is not None:
            auth._jwks = _load_jwks_file(settings.auth_jwks_file)
        if settings.auth_jwks_url:
            auth._jwks_client = jwt.PyJWKClient(
                settings.auth_jwks_url, cache_keys=True, lifespan=300, timeout=10
            )
        return auth

    # -- bearer JWTs ------------------------------------------------------------------------
    def verify_token(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed token") from exc
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self.hs_key is not None:
            key = self.hs_key
        elif alg in ASYMMETRIC_ALGORITHMS and (self._jwks or self._jwks_client):
            key = self._signing_key(token, header.get("kid"))
        else:
            raise AuthError(f"token algorithm {alg!r} is not accepted")
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
            raise AuthError(f"invalid token: {type(exc).__name__}") from exc
        roles, fhir_types = roles_from_claims(claims)
        return Principal(str(claims["sub"]), roles, "jwt", fhir_types, expires_at=claims["exp"])

    def _signing_key(self, token: str, kid: str | None) -> Any:
        try:
            if self._jwks_client is not None:
                return self._jwks_client.get_signing_key_from_jwt(token).key
            assert self._jwks is not None
            if kid is None and len(self._jwks.keys) == 1:
                return self._jwks.keys[0].key
            return self._jwks[str(kid)].key
        except (jwt.PyJWTError, KeyError) as exc:
            raise AuthError("no matching signing key") from exc

    # -- API keys ---------------------------------------------------------------------------
    def verify_api_key(self, key: str) -> Principal:
        digest = hash_api_key(key)
        for entry in self.api_keys:
            if hmac.compare_digest(digest, entry.sha256):
                return Principal(entry.name, entry.roles, "api-key")
        raise AuthError("unknown API key")

    def verify_credential(self, credential: str) -> Principal:
        """A pasted token or API key (the login page)."""
        credential = credential.strip()
        if credential.count(".") == 2:
            return self.verify_token(credential)
        return self.verify_api_key(credential)

    # -- browser sessions -------------------------------------------------------------------
    def issue_session(self, principal: Principal) -> tuple[str, int]:
        """A session cookie value for ``principal`` and its lifetime in seconds."""
        now = int(time.time())
        exp = now + int(self.settings.session_hours * 3600)
        if principal.expires_at is not None:
            exp = min(exp, int(principal.expires_at))
        claims = {
            "iss": SESSION_ISSUER,
            "aud": SESSION_ISSUER,
            "sub": principal.subject,
            "roles": sorted(principal.roles),
            "fhir": sorted(principal.fhir_types),
            "via": principal.method,
            "csrf": secrets.token_urlsafe(24),
            "iat": now,
            "exp": exp,
        }
        return jwt.encode(claims, self.session, algorithm="HS256"), max(0, exp - now)

    def verify_session(self, value: str) -> Principal:
        try:
            claims = jwt.decode(
                value,
                self.session,
                algorithms=["HS256"],
                audience=SESSION_ISSUER,
                issuer=SESSION_ISSUER,
                options={"require": ["exp", "sub", "csrf"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError("invalid session") from exc
        return Principal(
            str(claims["sub"]),
            frozenset(r for r in claims.get("roles", []) if r in ROLES),
            "session",
            frozenset(claims.get("fhir", [ALL_TYPES])),
            csrf=str(claims["csrf"]),
            expires_at=claims["exp"],
        )


def _load_jwks_file(path: Path) -> jwt.PyJWKSet:
    try:
        return jwt.PyJWKSet.from_json(path.read_text())
    except (OSError, jwt.PyJWTError) as exc:
        raise ConfigurationError(f"cannot read JWKS file {path}: {exc}") from exc


def mint_token(
    settings: Settings, roles: Iterable[str], subject: str, ttl_seconds: int, scope: str = ""
) -> str:
    """A development token signed with the HS256 shared key (``xraygate token create``)."""
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


# --- FastAPI dependencies ----------------------------------------------------------------------


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="xraygate"'})


def current_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal:
    """The authenticated caller; 401 without a valid credential."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    auth: Authenticator = request.app.state.authenticator
    try:
        if bearer is not None:
            principal = auth.verify_token(bearer.credentials)
        elif api_key:
            principal = auth.verify_api_key(api_key)
        elif cookie := request.cookies.get(SESSION_COOKIE):
            principal = auth.verify_session(cookie)
            if request.method not in SAFE_METHODS and not hmac.compare_digest(
                request.headers.get(CSRF_HEADER, ""), principal.csrf
            ):
                raise HTTPException(403, "missing or wrong CSRF token")
        else:
            raise _unauthorized("authentication required")
    except AuthError as exc:
        raise _unauthorized(str(exc)) from exc
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency admitting callers with any of ``roles`` (403 otherwise)."""

    def check(principal: PrincipalDep) -> Principal:
        if not principal.has(*roles):
            raise HTTPException(403, f"requires role {' or '.join(roles)}")
        return principal

    check.__name__ = f"require_{'_or_'.join(roles)}"
    return check


def require_fhir_reader(request: Request, principal: PrincipalDep) -> Principal:
    """``ehr`` (limited to the resource types its scopes name) or ``admin``."""
    if not principal.has("ehr", "admin"):
        raise HTTPException(403, "requires role ehr or admin")
    resource_type = request.path_params.get("resource_type")
    if not principal.may_read_fhir(resource_type):
        raise HTTPException(403, f"token scopes do not allow reading {resource_type}")
    return principal


def optional_principal(request: Request) -> Principal | None:
    """The session's principal for pages, or None (never raises)."""
    auth: Authenticator = request.app.state.authenticator
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return auth.verify_session(cookie)
    except AuthError:
        return None
