"""KEDA's resource models, from the npm package @kubernetes-models/keda (MIT; generated from
KEDA's Go API types): its compiled validators check types and required fields, and its type
declarations give every known field, so that an unknown (misspelt) field fails too.

Installed once with ``npm install`` into ``.pytest_cache/keda-models/<version>/`` and reused;
validation runs in node.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE = "@kubernetes-models/keda"
VERSION = "2.0.0"
CACHE = Path(__file__).resolve().parents[2] / ".pytest_cache" / "keda-models" / VERSION
MODELS = CACHE / "node_modules" / "@kubernetes-models" / "keda" / "keda.sh" / "v1alpha1"
VALIDATE_JS = """
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";
let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = JSON.parse(input).map((doc) => {
  const Model = keda[doc.kind];
  if (!Model) return `unknown KEDA kind ${doc.kind}`;
  try { new Model(doc).validate(); return null; } catch (e) { return String(e.message ?? e); }
});
console.log(JSON.stringify(out));
"""
FREE_FORM = re.compile(r"^\{")  # a map: {[key: string]: ...}


def install() -> Path:
    if not (MODELS / "ScaledObject.js").is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(CACHE),
                "--no-audit",
                "--no-fund",
                "--silent",
                f"{PACKAGE}@{VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    (CACHE / "validate.mjs").write_text(VALIDATE_JS)
    return CACHE


def validation_errors(docs: list[dict[str, Any]]) -> list[str | None]:
    """Per document: None when valid, else the validators' message or the unknown fields."""
    cache = install()
    run = subprocess.run(
        ["node", "validate.mjs"],
        cwd=cache,
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    typed: list[str | None] = json.loads(run.stdout)
    out: list[str | None] = []
    for doc, error in zip(docs, typed, strict=True):
        unknown = unknown_fields(doc, f"I{doc['kind']}")
        out.append(error or ("unknown fields: " + ", ".join(unknown) if unknown else None))
    return out


@lru_cache(maxsize=1)
def _interfaces() -> dict[str, dict[str, str]]:
    """Interface name (and its long alias) -> field -> declared type, from the .d.ts files."""
    interfaces: dict[str, dict[str, str]] = {}
    for path in MODELS.glob("*.d.ts"):
        text = path.read_text()
        declared = re.findall(
            r"export interface (I\w+)(?: extends [\w, ]+)? \{\n(.*?)\n\}", text, re.S
        )
        for name, body in declared:
            fields = dict(re.findall(r'^ {4}"(\w+)"\??: (.*?);?$', body, re.M))
            interfaces[name] = fields
            for alias in re.findall(rf"{name} as (I\w+)", text):
                interfaces[alias] = fields
    return interfaces


def unknown_fields(value: Any, interface: str, path: str = "") -> list[str]:
    """Paths of fields that the interface (recursively) does not declare."""
    if interface == "IIoK8sApimachineryPkgApisMetaV1ObjectMeta" and isinstance(value, dict):
        allowed = {"name", "namespace", "labels", "annotations"}
        return [f"{path}.{k}".lstrip(".") for k in value if k not in allowed]
    fields = _interfaces().get(interface)
    if fields is None or not isinstance(value, dict):
        return []
    out = []
    for key, item in value.items():
        declared = fields.get(key)
        if declared is None:
            out.append(f"{path}.{key}".lstrip("."))
            continue
        inner = re.fullmatch(r"Array<(I\w+)>", declared)
        if inner and isinstance(item, list):
            for n, element in enumerate(item):
                out += unknown_fields(element, inner.group(1), f"{path}.{key}[{n}]")
        elif re.fullmatch(r"I\w+", declared) and not FREE_FORM.match(declared):
            out += unknown_fields(item, declared, f"{path}.{key}")
    return out
