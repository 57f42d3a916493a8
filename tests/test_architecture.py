"""The house rules of ARCHITECTURE.md (at the repository root), checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "xraygate"
SERVICES = ["dicom_scp", "inference", "fhir", "hl7", "anonymizer", "gateway", "pacs"]


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


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_job_kinds_and_job_keys_are_spelled_only_in_core_jobs() -> None:
    """The job contract has one home: a bare "emit-hl7" or "outbox:" elsewhere is a second one."""
    from xraygate.core.jobs import JobKind

    kinds = {k.value for k in JobKind}
    home = PKG / "core" / "jobs.py"
    migrations = PKG / "core" / "migrations"
    bad = [
        f"{path.relative_to(PKG)}:{line}: {value!r}"
        for path in _modules()
        if path != home and migrations not in path.parents
        for line, value in _string_constants(path)
        if value in kinds or value.startswith("outbox:")
    ]
    assert not bad, "use xraygate.core.jobs (JobKind, payload classes):\n" + "\n".join(bad)


def _names_used(room: str, within: str | None = None) -> set[str]:
    """Names and attribute names a room's modules use (inside functions named ``within``)."""
    used: set[str] = set()
    for path in _modules(room):
        if path == PKG / "core" / "jobs.py":
            continue  # the contract itself names every class
        tree = ast.parse(path.read_text(), filename=str(path))
        scopes: list[ast.AST] = [tree]
        if within:
            scopes = [
                n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == within
            ]
        for scope in scopes:
            for node in ast.walk(scope):
                if isinstance(node, ast.Name):
                    used.add(node.id)
                elif isinstance(node, ast.Attribute):
                    used.add(node.attr)
    return used


def test_job_contract_names_the_rooms_that_enqueue_and_handle_each_kind() -> None:
    from xraygate.core.jobs import CONTRACT, JobKind

    assert set(CONTRACT) == set(JobKind)
    handled = {room: _names_used(room, "make_handlers") for room in SERVICES}
    for kind, contract in CONTRACT.items():
        assert contract.payload.kind == kind
        rooms = {room for room, names in handled.items() if kind.name in names}
        assert rooms == {contract.handled_by}, f"{kind} is handled in {rooms}"
        for room in contract.enqueued_by:
            assert contract.payload.__name__ in _names_used(room), f"{room} never builds {kind}"


# --- the gateway's rooms -------------------------------------------------------------------------
# gateway/ is split by audience. Every room may import the shared ones (deps, errors, auth,
# views); only app.py, which wires the app, imports the others (api, fhir_api, web, ops,
# middleware). So a feature room never reaches into another's internals, and a new one (e.g.
# dicomweb/) plugs in by importing the shared rooms and being included in app.py.
GATEWAY = PKG / "gateway"
SHARED_ROOMS = {"deps", "errors", "auth", "views"}


def _room(module: str) -> str | None:
    """``xraygate.gateway.<room>[...]`` -> room (None outside the gateway's rooms)."""
    parts = module.split(".")
    return parts[2] if parts[:2] == ["xraygate", "gateway"] and len(parts) > 2 else None


def _imported_modules(path: Path) -> set[str]:
    """Every module (or module attribute) named by an import, relative imports resolved."""
    own = list(path.relative_to(PKG.parent).with_suffix("").parts)
    package = own[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", _modules("gateway"), ids=lambda p: str(p.relative_to(GATEWAY)))
def test_gateway_rooms_import_only_shared_rooms(path: Path) -> None:
    room = path.relative_to(GATEWAY).parts[0].removesuffix(".py")
    if room == "app":
        return
    for name in _imported_modules(path):
        other = _room(name)
        assert other in (None, room, *SHARED_ROOMS), (
            f"gateway/{path.relative_to(GATEWAY)} imports {name}: the {room} room may import "
            f"only itself and the shared rooms {sorted(SHARED_ROOMS)}; app.py wires the rest"
        )


def test_http_exception_only_in_gateway_errors() -> None:
    """Routes raise the GatewayError family; only gateway/errors.py meets FastAPI's own."""
    for path in _modules():
        if path == GATEWAY / "errors.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            name = (
                node.id
                if isinstance(node, ast.Name)
                else node.attr
                if isinstance(node, ast.Attribute)
                else node.name
                if isinstance(node, ast.alias)
                else None
            )
            assert name != "HTTPException", f"{path} uses HTTPException: raise a GatewayError"


def _job_table() -> str:
    from dataclasses import fields

    from xraygate.core.jobs import CONTRACT

    rows = [
        "| kind | what it does | payload | enqueued by | handled by |",
        "|---|---|---|---|---|",
    ]
    for kind, c in CONTRACT.items():
        payload = f"{c.payload.__name__}({', '.join(f.name for f in fields(c.payload))})"
        producers = ", ".join(f"`{room}`" for room in c.enqueued_by)
        rows.append(
            f"| `{kind}` | {kind.description} | `{payload}` | {producers} | `{c.handled_by}` |"
        )
    return "\n".join(rows)


def test_architecture_md_job_table_matches_the_contract() -> None:
    text = (PKG.parent / "ARCHITECTURE.md").read_text()
    block = text.split("<!-- jobs:begin -->\n", 1)[1].split("\n<!-- jobs:end -->", 1)[0]
    expected = _job_table()
    assert block == expected, f"ARCHITECTURE.md's job table is stale; it should read:\n{expected}"


def test_secret_settings_are_secret_str() -> None:
    from pydantic import SecretStr

    from xraygate.core.config import Settings

    words = ("secret", "password", "token")
    for name, field in Settings.model_fields.items():
        if field.annotation in (int, float, bool):  # a lifetime or a switch, not a secret
            continue
        if any(word in name for word in words):
            assert field.annotation in (SecretStr, SecretStr | None), f"{name} is not a SecretStr"


def test_every_exception_class_is_in_the_one_tree() -> None:
    """Every exception xraygate defines derives from XraygateError (core/errors.py), except
    private control-flow signals (a leading underscore) that never leave their module."""
    import importlib
    import inspect
    import pkgutil

    import xraygate
    from xraygate.core.errors import XraygateError

    outside = []
    for info in pkgutil.walk_packages(xraygate.__path__, "xraygate."):
        if ".migrations." in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != info.name or not issubclass(cls, BaseException):
                continue
            if not name.startswith("_") and not issubclass(cls, XraygateError):
                outside.append(f"{info.name}.{name}")
    assert outside == [], f"exceptions outside the tree in core/errors.py: {outside}"
