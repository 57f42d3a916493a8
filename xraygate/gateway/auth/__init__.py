"""Authentication and roles: who is calling, proved by a bearer JWT, an API key or a browser
session, and with which :class:`Role`.

==================  ==========================================================================
module              what
==================  ==========================================================================
``principal``       ``Role``, ``Principal``, token claims and SMART scopes to roles
``keys``            the HS256 keys (configured or generated into the data dir), API keys
``tokens``          bearer JWTs: verification (shared key, JWKS), development tokens
``sessions``        the browser session cookie and its CSRF value
``authenticator``   one per app: a credential to a ``Principal``
==================  ==========================================================================

The FastAPI dependencies that use them (``current_principal``, ``require(Role)``) are in
``gateway/deps.py``.
"""

from xraygate.gateway.auth.authenticator import Authenticator
from xraygate.gateway.auth.keys import hash_api_key
from xraygate.gateway.auth.principal import Principal, Role, roles_from_claims
from xraygate.gateway.auth.sessions import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE
from xraygate.gateway.auth.tokens import mint_token

__all__ = [
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "Authenticator",
    "Principal",
    "Role",
    "hash_api_key",
    "mint_token",
    "roles_from_claims",
]
