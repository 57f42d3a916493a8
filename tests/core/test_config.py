from __future__ import annotations

from pathlib import Path

import pytest

from xraygate.core.config import Settings, get_settings


def test_defaults_are_the_documented_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AE_TITLE", "DICOM_PORT", "HTTP_PORT", "DATA_DIR", "DATABASE_URL", "STORAGE_URL"):
        monkeypatch.delenv(f"XRAYGATE_{name}", raising=False)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.ae_title, s.dicom_port, s.http_port, s.data_dir) == (
        "XRAYGATE",
        11112,
        8080,
        Path("./var"),
    )
    assert s.resolved_database_url == f"sqlite:///{Path('var/xraygate.db').resolve()}"
    assert s.resolved_storage_url == str(Path("var/objects").resolve())


def test_environment_overrides_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRAYGATE_AE_TITLE", "CXR_AI")
    monkeypatch.setenv("XRAYGATE_DICOM_PORT", "104")
    monkeypatch.setenv("XRAYGATE_ALLOWED_CALLING_AETS", "MODALITY1, PACS_A")
    monkeypatch.setenv("XRAYGATE_STORAGE_URL", "s3://bucket/prefix")
    get_settings.cache_clear()
    s = get_settings()
    assert s is get_settings(), "settings are cached"
    assert (s.ae_title, s.dicom_port) == ("CXR_AI", 104)
    assert s.allowed_calling_aets == ["MODALITY1", "PACS_A"]
    assert s.resolved_storage_url == "s3://bucket/prefix"
    get_settings.cache_clear()


def test_bad_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRAYGATE_DICOM_PORT", "eleven")
    with pytest.raises(ValueError, match="dicom_port"):
        Settings()
