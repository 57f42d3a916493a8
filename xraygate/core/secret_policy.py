"""Start-up checks of secret settings: a deployment never runs with a secret anyone can read.

:func:`check_secrets` refuses (``ConfigurationError`` naming the setting) any secret setting, or
credential inside a URL setting, that holds a placeholder shipped in documentation or example
manifests (``change-me...``), and HS256 / session keys shorter than :data:`MIN_KEY_BYTES`: with
either, anyone who reads the repository could sign an admin token or a session cookie. The
service, the gateway app and ``xraygate token create`` call it before they use a key.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from xraygate.core.config import Settings, secret_value
from xraygate.core.errors import ConfigurationError

#: HS256 keys shorter than the hash output are refused (RFC 7518 section 3.2).
MIN_KEY_BYTES = 32

#: Words that mark a value as a placeholder from an example file, wherever they appear in it.
_PLACEHOLDER = re.compile(r"change[-_ ]?me|replace[-_ ]?me|your[-_]?secret|placeholder", re.I)

#: Secret settings whose value must be at least MIN_KEY_BYTES long when set.
_KEYS = ("auth_shared_secret", "session_secret")

#: URL settings that may carry a user:password.
_URLS = ("database_url", "fhir_push_url", "escalation_webhook_url", "auth_jwks_url")


def is_placeholder(value: str) -> bool:
    """Whether ``value`` looks like an example value (``change-me...``) rather than a secret."""
    return bool(_PLACEHOLDER.search(value))


def env_name(field: str) -> str:
    return f"XRAYGATE_{field.upper()}"


def check_secrets(settings: Settings) -> None:
    """Raise :class:`ConfigurationError` naming the first unsafe secret setting."""
    for field in type(settings).model_fields:
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            plain = secret_value(value) or ""
            if is_placeholder(plain):
                raise ConfigurationError(
                    f"{env_name(field)} holds a placeholder value from an example file; "
                    "set a random secret (e.g. `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))'`)"
                )
    for field in _KEYS:
        key = secret_value(getattr(settings, field))
        if key is not None and len(key.encode()) < MIN_KEY_BYTES:
            raise ConfigurationError(
                f"{env_name(field)} is shorter than {MIN_KEY_BYTES} bytes; "
                "anyone could guess it and sign tokens or sessions"
            )
    for field in _URLS:
        url = getattr(settings, field)
        password = _url_password(url) if url else None
        if password is not None and is_placeholder(password):
            raise ConfigurationError(
                f"{env_name(field)} carries a placeholder password from an example file"
            )


def _url_password(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password is not None else None
