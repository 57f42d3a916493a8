"""A site's de-identification set-up from settings: options, secret, rules, the export store."""

from __future__ import annotations

import secrets
from pathlib import Path

from xraygate.anonymizer.engine import DeidConfig
from xraygate.anonymizer.pixels import load_rules
from xraygate.anonymizer.profile import parse_options
from xraygate.core.config import Settings, secret_value
from xraygate.core.errors import ConfigurationError
from xraygate.core.secret_files import secret_file
from xraygate.core.storage import ObjectStore, open_store

SECRET_FILE = "deid-secret"  # noqa: S105  (a file name, not a secret)


def site_secret(settings: Settings) -> bytes:
    """The configured secret, else one generated once into ``<data_dir>/deid-secret`` (0600)."""
    configured = secret_value(settings.deid_secret)
    if configured:
        return configured.encode()
    return secret_file(settings.data_dir / SECRET_FILE, lambda: secrets.token_hex(32))


def deid_config(
    settings: Settings,
    *,
    options: list[str] | None = None,
    secret: bytes | None = None,
    rules_file: Path | None = None,
) -> DeidConfig:
    return DeidConfig(
        options=parse_options(settings.deid_options if options is None else options),
        secret=secret or site_secret(settings),
        rules=load_rules(rules_file or settings.deid_rules_file),
        burned_in_modalities=frozenset(m.upper() for m in settings.deid_burned_in_modalities),
        shift_max_days=settings.deid_date_shift_max_days,
    )


def export_store_url(settings: Settings) -> str:
    url = settings.export_storage_url or str((settings.data_dir / "export").resolve())
    if url.rstrip("/") == settings.resolved_storage_url.rstrip("/"):
        raise ConfigurationError("the export store must be separate from the main object store")
    return url


def export_store(settings: Settings) -> ObjectStore:
    """The retraining export store: its own URL, endpoint and credentials."""
    return open_store(
        export_store_url(settings),
        endpoint_url=settings.export_s3_endpoint_url,
        region=settings.export_s3_region,
        access_key_id=settings.export_s3_access_key_id,
        secret_access_key=secret_value(settings.export_s3_secret_access_key),
    )
