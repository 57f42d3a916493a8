from pathlib import Path

import pytest

from xraygate.core.config import Settings
from xraygate.core.errors import ObjectNotFound
from xraygate.core.storage import store_from_settings


@pytest.mark.integration
def test_s3_roundtrip_over_http(s3_settings: Settings, tmp_path: Path) -> None:
    store = store_from_settings(s3_settings)
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 3_000_000)
    obj = store.put_file("dicom/a/b.dcm", src)
    assert obj.size == 3_000_000
    assert store.exists("dicom/a/b.dcm")
    assert store.get_bytes("dicom/a/b.dcm") == src.read_bytes()
    assert list(store.list("dicom/")) == ["dicom/a/b.dcm"]
    store.delete("dicom/a/b.dcm")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("dicom/a/b.dcm")
