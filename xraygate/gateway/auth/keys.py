"""Key material: the HS256 keys of bearer tokens and sessions (configured, or generated once into
a file of the data directory), and the static API keys of system clients."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from xraygate.core.config import Settings
from xraygate.core.errors import ConfigurationError
from xraygate.core.secret_files import secret_file
from xraygate.gateway.auth.principal import Role


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
    """A system client's key, known only by its sha256 (``XRAYGATE_AUTH_API_KEYS``)."""

    name: str
    roles: frozenset[Role]
    sha256: str


def parse_api_keys(entries: Iterable[str]) -> list[ApiKey]:
    """``name:role[+role]:sha256`` entries."""
    keys = []
    for entry in entries:
        name, _, rest = entry.partition(":")
        role_text, _, digest = rest.partition(":")
        words = [r for r in role_text.split("+") if r]
        roles = Role.parse(words)
        if not name or not re.fullmatch(r"[0-9a-f]{64}", digest) or len(roles) != len(set(words)):
            raise ConfigurationError(
                "XRAYGATE_AUTH_API_KEYS entries are name:role[+role]:sha256 (64 hex digits)"
            )
        keys.append(ApiKey(name, roles, digest))
    return keys


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
