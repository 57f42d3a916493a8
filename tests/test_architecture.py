"""The house rules of DEVELOPERS.md, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "xraygate"
SERVICES = ["dicom_scp", "inference", "fhir", "hl7", "anonymizer", "gateway"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(sub: str = "") -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


@pytest.mark.parametrize("service", SERVICES)
def test_service_packages_import_core_never_each_other(service: str) -> None:
    for path in _modules(service):
        for name in _imports(path):
            for other in SERVICES:
                if other != service:
                    assert not name.startswith(f"xraygate.{other}"), f"{path} imports {name}"
            assert not name.startswith(("xraygate.cli", "xraygate.service")), f"{path}: {name}"


def test_only_inference_imports_tensorflow() -> None:
    for path in _modules():
        if "inference" in path.relative_to(PKG).parts:
            continue
        bad = {n for n in _imports(path) if n.split(".")[0] in ("tensorflow", "keras")}
        assert not bad, f"{path} imports {bad}"


def test_only_core_storage_imports_boto3() -> None:
    for path in _modules():
        if path == PKG / "core" / "storage.py":
            continue
        bad = {n for n in _imports(path) if n.split(".")[0] in ("boto3", "botocore")}
        assert not bad, f"{path} imports {bad}"


def test_core_imports_no_service() -> None:
    for path in _modules("core"):
        for name in _imports(path):
            assert not any(name.startswith(f"xraygate.{s}") for s in SERVICES), f"{path}: {name}"


def test_fhir_resources_still_importable_beside_our_fhir_package() -> None:
    import fhir.resources

    import xraygate.fhir

    assert Path(fhir.resources.__file__).parts[-3] != "xraygate"
    assert xraygate.fhir.__name__ == "xraygate.fhir"
