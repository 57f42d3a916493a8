"""Ed25519 keys and signatures of model releases (the ``cryptography`` package).

The publisher keeps a PEM private key (``xraygate model keygen``); sites trust its public key,
written as the base64 of the 32 raw bytes (``XRAYGATE_MODEL_TRUSTED_KEYS``). A key's id is the
first 16 hex digits of the sha256 of those bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from xraygate.core.errors import ConfigurationError


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_text(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_public(text: str) -> Ed25519PublicKey:
    """A trusted key: base64 of the 32 raw bytes, or a PEM public key."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ConfigurationError("trusted model key is not an Ed25519 key")
            return key
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error) as exc:
        raise ConfigurationError(f"invalid trusted model key {text[:12]}...: {exc}") from exc


@dataclass(frozen=True)
class KeyPair:
    private_file: Path
    public_file: Path
    public: str
    key_id: str


def generate(directory: Path, name: str = "model-signing") -> KeyPair:
    """Write ``<name>.pem`` (private, mode 0600) and ``<name>.pub`` (base64 public key)."""
    directory.mkdir(parents=True, exist_ok=True)
    private_file, public_file = directory / f"{name}.pem", directory / f"{name}.pub"
    if private_file.exists():
        raise ConfigurationError(f"{private_file} exists: not overwriting a signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = public_text(key.public_key())
    public_file.write_text(public + "\n")
    return KeyPair(private_file, public_file, public, key_id(key.public_key()))


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot read the signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{path} is not an Ed25519 private key")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The signature, base64 (the ``release.sig`` file's content)."""
    return base64.b64encode(key.sign(data)) + b"\n"


def verify(trusted: list[Ed25519PublicKey], data: bytes, signature: bytes) -> str | None:
    """The id of the trusted key whose signature ``signature`` is over ``data``, else None."""
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
    except binascii.Error:
        return None
    for key in trusted:
        try:
            key.verify(raw, data)
        except InvalidSignature:
            continue
        return key_id(key)
    return None
