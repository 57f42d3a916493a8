"""Authentication and roles: who is calling, proved by a bearer JWT, an API key or a session."""

from xraygate.gateway.auth.authenticator import (
    ROLES,
    SESSION_COOKIE,
    hash_api_key,
    mint_token,
    roles_from_claims,
)

__all__ = ["ROLES", "SESSION_COOKIE", "hash_api_key", "mint_token", "roles_from_claims"]
