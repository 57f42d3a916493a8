from pathlib import Path

from xraygate.core.config import Settings
from xraygate.core.settings_doc import render_readme, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_setting_as_generated() -> None:
    text = README.read_text()
    assert render_readme(text) == text, "run: xraygate settings-doc --readme README.md"
    for name in Settings.model_fields:
        assert f"`XRAYGATE_{name.upper()}`" in text


def test_every_setting_has_a_description() -> None:
    missing = [n for n, f in Settings.model_fields.items() if not f.description]
    assert missing == []
    assert settings_table().count("\n") == len(Settings.model_fields) + 1
