"""Signed model distribution, centre -> edge: publish a version, pull and verify it at a site.

A release at the model source (a directory or ``s3://bucket/prefix``), per version::

    <name>/<version>/model.keras      the artifact, byte for byte as registered
    <name>/<version>/manifest.json    its manifest (sha256 of the artifact, reference, metrics)
    <name>/<version>/release.json     name, version, sha256 + size of both files, publisher, key id
    <name>/<version>/release.sig      Ed25519 signature of release.json (base64), written last

A site pulls (``xraygate model pull`` or the periodic ``model-sync`` job) every complete release
it does not have: the signature must verify with a key of ``XRAYGATE_MODEL_TRUSTED_KEYS``, the
manifest and artifact must match the signed sha256s, and the manifest must name the signed
version and artifact digest; then the registry imports it (loading it once more) as a **shadow**
version. Every publish, pull and refusal is an audit row (:func:`~xraygate.core.models.audit.
model_event`); a refused release is never imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Engine, select
from sqlmodel import col

from xraygate.core.config import Settings, secret_value
from xraygate.core.db import read_session, write_session
from xraygate.core.errors import (
    ConfigurationError,
    ModelRegistryError,
    ObjectNotFound,
    ReleaseRefused,
)
from xraygate.core.models import AuditRecord, ModelState, ModelVersion, utcnow
from xraygate.core.models.audit import model_event
from xraygate.core.models.results import find_version, set_state
from xraygate.core.storage import ObjectStore, open_store
from xraygate.inference import signing
from xraygate.inference.manifest import parse_manifest
from xraygate.inference.registry import import_model, keys

log = logging.getLogger(__name__)

FORMAT = "xraygate-model-release/1"
RELEASE, SIGNATURE = "release.json", "release.sig"


class FileDigest(BaseModel):
    file: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Release(BaseModel):
    format: str = FORMAT
    name: str
    version: str
    artifact: FileDigest
    manifest: FileDigest
    published_at: str
    publisher: str = ""
    key_id: str

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"


def source_store(settings: Settings, url: str) -> ObjectStore:
    """The model source: its own S3 endpoint and keys, else the main store's."""
    return open_store(
        url,
        endpoint_url=settings.model_source_s3_endpoint_url or settings.s3_endpoint_url,
        region=settings.model_source_s3_region,
        access_key_id=settings.model_source_s3_access_key_id or settings.s3_access_key_id,
        secret_access_key=secret_value(
            settings.model_source_s3_secret_access_key or settings.s3_secret_access_key
        ),
    )


def _digest(name: str, data: bytes) -> FileDigest:
    return FileDigest(file=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


# --- publish ----------------------------------------------------------------------------------


def publish(
    engine: Engine,
    store: ObjectStore,
    target: ObjectStore,
    target_url: str,
    label: str,
    key: Any,
    *,
    actor: str,
    via: str = "cli",
) -> Release:
    """Write a registered version's signed release to ``target``; audited in ``engine``."""
    name, _, version = label.partition(":")
    with read_session(engine) as session:
        row = find_version(session, name, version)
    artifact = store.get_bytes(row.object_key)
    if hashlib.sha256(artifact).hexdigest() != row.sha256:
        raise ModelRegistryError(f"{label}: the stored artifact does not match its sha256")
    manifest = parse_manifest(json.dumps(row.manifest))
    manifest_bytes = store.get_bytes(keys(manifest)[1])
    if parse_manifest(manifest_bytes.decode()) != manifest:
        raise ModelRegistryError(f"{label}: the stored manifest differs from the index")
    public = key.public_key()
    release = Release(
        name=name,
        version=version,
        artifact=_digest(manifest.artifact, artifact),
        manifest=_digest("manifest.json", manifest_bytes),
        published_at=utcnow().isoformat(timespec="seconds"),
        publisher=actor,
        key_id=signing.key_id(public),
    )
    base = f"{name}/{version}"
    _refuse_overwrite(target, base, release)
    body = (release.model_dump_json(indent=2) + "\n").encode()
    target.put_bytes(f"{base}/{manifest.artifact}", artifact)
    target.put_bytes(f"{base}/manifest.json", manifest_bytes)
    target.put_bytes(f"{base}/{RELEASE}", body)
    target.put_bytes(f"{base}/{SIGNATURE}", signing.sign(key, body))  # last: complete now
    detail = f"to {target_url} sha256={row.sha256} key={release.key_id}"
    with write_session(engine) as session:
        session.add(model_event("publish", label, actor=actor, via=via, detail=detail))
    return release


def _refuse_overwrite(target: ObjectStore, base: str, release: Release) -> None:
    try:
        existing = Release.model_validate_json(target.get_bytes(f"{base}/{RELEASE}"))
    except ObjectNotFound:
        return
    except ValidationError:
        existing = None
    if existing is None or existing.artifact.sha256 != release.artifact.sha256:
        raise ModelRegistryError(
            f"{release.label} is already published at the target with another artifact"
        )


# --- pull -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PullOutcome:
    model: str
    status: str  # imported | present | refused
    detail: str


def trusted_keys(settings: Settings) -> list[Any]:
    keys_ = [signing.parse_public(k) for k in settings.model_trusted_keys]
    if not keys_:
        raise ConfigurationError(
            "no trusted model keys: set XRAYGATE_MODEL_TRUSTED_KEYS to the publisher's key"
        )
    return keys_


def releases(source: ObjectStore) -> list[str]:
    """``name/version`` of every complete (signed) release at the source."""
    out = []
    for key in source.list(""):
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == SIGNATURE:
            out.append(f"{parts[0]}/{parts[1]}")
    return sorted(out)


def pull(
    settings: Settings,
    engine: Engine,
    store: ObjectStore,
    source_url: str,
    *,
    actor: str,
    via: str = "cli",
) -> list[PullOutcome]:
    """Import every new, verified release at ``source_url`` as a shadow version."""
    trusted = trusted_keys(settings)
    source = source_store(settings, source_url)
    registered = _registered(engine)
    outcomes = []
    for base in releases(source):
        label = base.replace("/", ":", 1)
        try:
            if label in registered:
                outcomes.append(_present(source, base, label, registered[label]))
                continue
            outcome = _pull_one(engine, store, source, source_url, base, trusted, actor, via)
        except ReleaseRefused as exc:
            _audit_refusal(engine, label, f"from {source_url}: {exc}", actor, via)
            log.warning("model release %s refused: %s", label, exc)
            outcome = PullOutcome(label, "refused", str(exc))
        outcomes.append(outcome)
    return outcomes


def _present(source: ObjectStore, base: str, label: str, sha256: str) -> PullOutcome:
    """A release of a registered version: nothing to do, unless it names another artifact."""
    try:
        release = Release.model_validate_json(source.get_bytes(f"{base}/{RELEASE}"))
    except ValidationError as exc:
        raise ReleaseRefused("invalid release.json") from exc
    if release.artifact.sha256 != sha256:
        raise ReleaseRefused(f"{label} is registered here with another artifact ({sha256[:12]})")
    return PullOutcome(label, "present", f"sha256={sha256}")


def _registered(engine: Engine) -> dict[str, str]:
    with read_session(engine) as session:
        return {row.label: row.sha256 for row in session.scalars(select(ModelVersion))}


def _pull_one(
    engine: Engine,
    store: ObjectStore,
    source: ObjectStore,
    source_url: str,
    base: str,
    trusted: list[Any],
    actor: str,
    via: str,
) -> PullOutcome:
    body = source.get_bytes(f"{base}/{RELEASE}")
    key_used = signing.verify(trusted, body, source.get_bytes(f"{base}/{SIGNATURE}"))
    if key_used is None:
        raise ReleaseRefused("the signature does not verify with any trusted key")
    try:
        release = Release.model_validate_json(body)
    except ValidationError as exc:
        raise ReleaseRefused(f"invalid release.json: {exc.error_count()} error(s)") from exc
    if f"{release.name}/{release.version}" != base or release.format != FORMAT:
        raise ReleaseRefused(f"release.json names {release.label}, not {base}")
    manifest_bytes = source.get_bytes(f"{base}/{release.manifest.file}")
    _check(release.manifest, manifest_bytes)
    try:
        manifest = parse_manifest(manifest_bytes.decode())
    except (ModelRegistryError, UnicodeDecodeError) as exc:
        raise ReleaseRefused(f"invalid manifest: {exc}") from exc
    if (manifest.label, manifest.sha256, manifest.artifact) != (
        release.label,
        release.artifact.sha256,
        release.artifact.file,
    ):
        raise ReleaseRefused("the manifest does not describe the signed artifact")
    with tempfile.TemporaryDirectory(prefix="xraygate-pull-") as tmp:
        folder = Path(tmp)
        artifact = folder / manifest.artifact
        source.download(f"{base}/{release.artifact.file}", artifact)
        _check(release.artifact, artifact.read_bytes())
        (folder / "manifest.json").write_bytes(manifest_bytes)
        origin = f"pull:{source_url} key={key_used}"
        row = import_model(engine, store, folder, origin=origin)
    detail = f"from {source_url} sha256={row.sha256} key={key_used}; imported as shadow"
    with write_session(engine) as session:
        set_state(session, row.name, row.version, ModelState.SHADOW)
        session.add(model_event("pull", row.label, actor=actor, via=via, detail=detail))
    return PullOutcome(row.label, "imported", detail)


def _check(expected: FileDigest, data: bytes) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected.sha256 or len(data) != expected.size:
        raise ReleaseRefused(
            f"{expected.file}: sha256 {actual[:12]} is not the signed {expected.sha256[:12]}"
        )


def _audit_refusal(engine: Engine, label: str, detail: str, actor: str, via: str) -> None:
    """One audit row per distinct refusal (a periodic pull does not repeat it every hour)."""
    with write_session(engine) as session:
        last = session.scalars(
            select(AuditRecord)
            .where(col(AuditRecord.route) == "model refuse", col(AuditRecord.path) == label)
            .order_by(col(AuditRecord.id).desc())
        ).first()
        if last is not None and last.query == detail[:2000]:
            return
        session.add(model_event("refuse", label, actor=actor, via=via, detail=detail, status=403))
