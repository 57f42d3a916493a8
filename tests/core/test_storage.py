"""The object store contract, on the local filesystem and on an S3 endpoint over HTTP."""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from pathlib import Path

import pytest

from xraygate.core.config import Settings
from xraygate.core.errors import ConfigurationError, ObjectNotFound, StorageError, StorageFull
from xraygate.core.storage import LocalStore, ObjectStore, S3Store, open_store, store_from_settings


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "objects")
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return open_store(
        f"s3://xg-{uuid.uuid4().hex[:10]}/some/prefix",
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
    )


def test_put_get_list_delete(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    obj = store.put_file("dicom/1.2/3.4/5.6.dcm", src)
    assert obj.size == len(data) and obj.sha256 == hashlib.sha256(data).hexdigest()
    assert src.exists(), "put_file without move keeps the source"
    store.put_bytes("models/demo/1/manifest.json", b"{}")
    assert store.exists("dicom/1.2/3.4/5.6.dcm")
    assert not store.exists("dicom/nope.dcm")
    assert store.get_bytes("dicom/1.2/3.4/5.6.dcm") == data
    dest = tmp_path / "copy.bin"
    store.download("dicom/1.2/3.4/5.6.dcm", dest)
    assert dest.read_bytes() == data
    assert sorted(store.list()) == ["dicom/1.2/3.4/5.6.dcm", "models/demo/1/manifest.json"]
    assert list(store.list("models/")) == ["models/demo/1/manifest.json"]
    store.delete("dicom/1.2/3.4/5.6.dcm")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("dicom/1.2/3.4/5.6.dcm")
    store.check()


def test_move_consumes_the_source(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "spool.dcm"
    src.write_bytes(b"DICM")
    store.put_file("a/b.dcm", src, move=True)
    assert not src.exists()
    assert store.get_bytes("a/b.dcm") == b"DICM"


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a"])
def test_rejects_unsafe_keys(store: ObjectStore, key: str) -> None:
    with pytest.raises(StorageError):
        store.put_bytes(key, b"x")


def test_local_store_leaves_no_partial_object_when_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "objects")
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 1000)

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("shutil.copyfile", full)
    with pytest.raises(StorageFull):
        store.put_file("a/b.dcm", src)
    assert list(store.list()) == []
    assert not store.exists("a/b.dcm")


def test_local_free_bytes_and_s3_unbounded(tmp_path: Path) -> None:
    free = LocalStore(tmp_path).free_bytes()
    assert free is not None and free > 0


def test_store_from_settings_defaults_to_data_dir(sqlite_settings: Settings) -> None:
    store = store_from_settings(sqlite_settings)
    assert isinstance(store, LocalStore)
    assert store.root == (sqlite_settings.data_dir / "objects").resolve()


def test_s3_settings_build_an_s3_store(s3_settings: Settings) -> None:
    store = store_from_settings(s3_settings)
    assert isinstance(store, S3Store) and store.free_bytes() is None
    store.check()


def test_unknown_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        open_store("ftp://host/x")
    with pytest.raises(ConfigurationError):
        open_store("s3:///nobucket")


def test_unreachable_s3_endpoint_is_a_storage_error() -> None:
    with pytest.raises(StorageError):
        open_store(
            "s3://bucket",
            endpoint_url="http://127.0.0.1:9",
            access_key_id="x",
            secret_access_key="y",
        )


def test_local_put_bytes_without_sync_replaces_whole_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest's write of an object received in memory (its flush is the journal's group
    commit): written under a temp name and renamed; a failing write leaves nothing."""
    store = LocalStore(tmp_path / "objects")
    digest = (3, "f" * 64)
    assert store.put_bytes("a/b.dcm", b"abc", digest=digest, sync=False, sync_dir=False).sha256 == (
        "f" * 64
    )
    assert (
        store.put_bytes("a/b.dcm", b"abc", sync=False).sha256 == hashlib.sha256(b"abc").hexdigest()
    )
    assert store.get_bytes("a/b.dcm") == b"abc"
    assert sorted(p.name for p in (tmp_path / "objects" / "a").iterdir()) == ["b.dcm"]

    def full(*_a: object, **_k: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.write", full)
    with pytest.raises(StorageFull):
        store.put_bytes("a/c.dcm", b"xyz", sync=False)
    assert sorted(p.name for p in (tmp_path / "objects" / "a").iterdir()) == ["b.dcm"]
