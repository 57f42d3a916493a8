"""Secrets generated once into files under the data directory (when settings give none).

:func:`secret_file` is the one way to make such a file: it is written under a temporary name
created with mode 0600 (so the secret is never readable by others, not even for a moment) and
linked into place atomically, so a process starting at the same moment never reads it half
written and never overwrites another's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from xraygate.core.errors import ConfigurationError


def secret_file(path: Path, generate: Callable[[], str]) -> bytes:
    """The secret stored in ``path``, first generated with ``generate()`` if the file is absent."""
    if not path.exists():
        _create(path, generate())
    value = path.read_text().strip()
    if not value:
        raise ConfigurationError(f"empty secret in {path}")
    return value.encode()


def _create(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first: theirs
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
