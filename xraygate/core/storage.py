"""The object store: where DICOM objects, models and exports live.

:class:`ObjectStore` is the protocol; :class:`LocalStore` (a directory, the embedded default) and
:class:`S3Store` (any S3 endpoint: MinIO, Ceph RGW, AWS) implement it. Only this module imports
boto3. Keys are ``/``-separated relative paths. Objects are written whole or not at all: the local
store writes a temp file, fsyncs it and renames it into place; S3 PUTs are atomic by nature.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlparse

from xraygate.core.config import Settings, secret_value
from xraygate.core.errors import ConfigurationError, ObjectNotFound, StorageError, StorageFull

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


def file_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    """Make ``directory``'s entries (a rename into it, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid object key {key!r}")
    return key


@runtime_checkable
class ObjectStore(Protocol):
    """Where bytes live. Implementations raise only :class:`StorageError` subclasses."""

    url: str

    def put_file(
        self, key: str, path: Path, *, move: bool = False, digest: tuple[int, str] | None = None
    ) -> StoredObject:
        """Store the file at ``path`` under ``key``; ``move`` lets the store consume the file.

        ``digest`` is the file's (size, sha256) when the caller already computed it.
        """
        ...

    def put_bytes(self, key: str, data: bytes) -> StoredObject: ...

    def get_bytes(self, key: str) -> bytes: ...

    def download(self, key: str, dest: Path) -> None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def free_bytes(self) -> int | None:
        """Free space where the store writes, or None when unbounded (S3)."""
        ...

    def check(self) -> None:
        """Raise StorageError when the store cannot be reached (readiness)."""
        ...


def _make_dirs(directory: Path) -> list[Path]:
    """``mkdir -p``; the directories it created, outermost first."""
    missing: list[Path] = []
    probe = directory
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
    return list(reversed(missing))


class LocalStore:
    """Objects as files below a root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = str(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def directory_of(self, key: str) -> Path:
        """The directory an object's file is renamed into."""
        return self._path(key).parent

    def _make_parent(self, dest: Path, sync: bool) -> None:
        """Create the directories ``dest`` goes into; with ``sync``, each new one's own entry
        is made durable (the fsync of its parent)."""
        created = _make_dirs(dest.parent)
        if sync:
            for parent in {d.parent for d in created}:
                fsync_dir(parent)

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        move: bool = False,
        digest: tuple[int, str] | None = None,
        sync_dir: bool = True,
        sync: bool = True,
    ) -> StoredObject:
        """``sync_dir=False`` leaves the fsync of the key's directory (which makes the rename
        durable) to the caller: the ingest journal fsyncs it with its group commit.
        ``sync=False`` leaves every flush to the caller (the journal's ``syncfs``)."""
        dest = self._path(key)
        try:
            self._make_parent(dest, sync)
            size, sha = digest or file_digest(path)
            if move and path.stat().st_dev == dest.parent.stat().st_dev:
                staged = path
            else:
                fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".incoming-")
                os.close(fd)
                staged = Path(tmp)
                shutil.copyfile(path, staged)
            if sync:
                with staged.open("rb+") as fh:
                    os.fsync(fh.fileno())
            staged.replace(dest)
            if sync and sync_dir:
                fsync_dir(dest.parent)
            if move and path.exists():
                path.unlink()
        except OSError as exc:
            raise _os_error(exc, key) from exc
        return StoredObject(key, size, sha)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        digest: tuple[int, str] | None = None,
        sync_dir: bool = True,
        sync: bool = True,
    ) -> StoredObject:
        """``digest``, ``sync_dir`` and ``sync`` as for :meth:`put_file`. The object is
        written to a temp name of this thread beside its key (never seen by :meth:`list`) and
        renamed."""
        dest = self._path(key)
        staged = dest.with_name(f".incoming-{os.getpid()}-{threading.get_ident()}-{dest.name}")
        try:
            self._make_parent(dest, sync)
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                write_all(fd, data)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            staged.replace(dest)
            if sync and sync_dir:
                fsync_dir(dest.parent)
        except OSError as exc:
            staged.unlink(missing_ok=True)
            raise _os_error(exc, key) from exc
        size, sha = digest or (len(data), hashlib.sha256(data).hexdigest())
        return StoredObject(key, size, sha)

    def remove_staged(self, key: str, idle_seconds: float) -> int:
        """Delete temp files of ``key`` left by a process killed while writing it (idle for
        longer than ``idle_seconds``: one being written now is kept); how many."""
        dest = self._path(key)
        cutoff = time.time() - idle_seconds
        removed = 0
        for staged in dest.parent.glob(f".incoming-*-{dest.name}"):
            with contextlib.suppress(FileNotFoundError):
                if staged.stat().st_mtime < cutoff:
                    staged.unlink()
                    removed += 1
        return removed

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror}") from exc

    def open(self, key: str) -> IO[bytes]:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def download(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise _os_error(exc, key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.name.startswith(".incoming-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def free_bytes(self) -> int | None:
        return shutil.disk_usage(self.root).free

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"object store root is not writable: {self.root}")


def _os_error(exc: OSError, key: str) -> StorageError:
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"no space left writing {key}")
    return StorageError(f"cannot write {key}: {exc.strerror}")


class S3Store:
    """Objects in an S3 bucket below an optional prefix, through boto3."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        create_bucket: bool = True,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}
            ),
        )
        if create_bucket:
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self._client.create_bucket(Bucket=self.bucket)
            except (ClientError, BotoCoreError) as exc:
                raise StorageError(f"cannot create bucket {self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 endpoint unreachable: {exc}") from exc

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(key) from exc
            raise StorageError(f"S3 {what} {key} failed: {code}") from exc
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"S3 {what} {key} failed: {type(exc).__name__}") from exc

    def put_file(
        self, key: str, path: Path, *, move: bool = False, digest: tuple[int, str] | None = None
    ) -> StoredObject:
        size, sha = digest or file_digest(path)
        self._call(
            "upload",
            key,
            self._client.upload_file,
            str(path),
            self.bucket,
            self._key(key),
            ExtraArgs={"Metadata": {"sha256": sha}},
        )
        if move:
            path.unlink(missing_ok=True)
        return StoredObject(key, size, sha)

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        sha = hashlib.sha256(data).hexdigest()
        self._call(
            "put",
            key,
            self._client.put_object,
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            Metadata={"sha256": sha},
        )
        return StoredObject(key, len(data), sha)

    def get_bytes(self, key: str) -> bytes:
        resp = self._call(
            "get", key, self._client.get_object, Bucket=self.bucket, Key=self._key(key)
        )
        body: bytes = self._call("read", key, resp["Body"].read)
        return body

    def download(self, key: str, dest: Path) -> None:
        self._call(
            "download", key, self._client.download_file, self.bucket, self._key(key), str(dest)
        )

    def exists(self, key: str) -> bool:
        try:
            self._call(
                "head", key, self._client.head_object, Bucket=self.bucket, Key=self._key(key)
            )
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call(
            "delete", key, self._client.delete_object, Bucket=self.bucket, Key=self._key(key)
        )

    def list(self, prefix: str = "") -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self._call(
            "list", prefix, lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full))
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][strip:]

    def free_bytes(self) -> int | None:
        return None

    def check(self) -> None:
        self._call("head bucket", self.bucket, self._client.head_bucket, Bucket=self.bucket)


def open_store(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> ObjectStore:
    """A store from a URL: a filesystem path (or file://) or s3://bucket/prefix."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigurationError(f"storage URL has no bucket: {url}")
        return S3Store(
            parsed.netloc,
            parsed.path,
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
        )
    if parsed.scheme in ("", "file"):
        return LocalStore(Path(parsed.path if parsed.scheme else url))
    raise ConfigurationError(f"unsupported storage URL scheme {parsed.scheme!r}")


def store_from_settings(settings: Settings) -> ObjectStore:
    return open_store(
        settings.resolved_storage_url,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret_value(settings.s3_secret_access_key),
    )
