"""The README's configuration table, generated from :class:`Settings` so it cannot drift."""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticUndefined

from xraygate.core.config import Settings

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(empty)"
    return "(unset)" if value is None else str(value)


def settings_table() -> str:
    lines = ["| variable | default | description |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `XRAYGATE_{name.upper()}` | `{_default(field)}` | {description} |")
    return "\n".join(lines)


def render_readme(readme: str) -> str:
    """``readme`` with the block between the settings markers replaced by the current table."""
    head, sep, rest = readme.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError("README has no settings markers")
    return f"{head}{BEGIN}\n{settings_table()}\n{END}{tail}"
