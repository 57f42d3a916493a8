"""Help text a person can read (issue 12): every command's --help has real metavars (no Python
type placeholders such as <bool>, <str>, <list[Path]>), no stray space before punctuation, and
says its defaults."""

from __future__ import annotations

import re
from typing import Any

from click.testing import CliRunner

from xraygate.cli import command

PLACEHOLDER = re.compile(r"<(bool|str|int|float|Path|datetime|list\[[^>]*\]|\w+ \| \w+)>")


def _paths(cmd: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, sub in getattr(cmd, "commands", {}).items():  # typer vendors its own click
        out += _paths(sub, (*prefix, name))
    return out


def test_every_help_is_plain_and_complete() -> None:
    root = command()
    paths = _paths(root)
    assert len(paths) > 30, "every command and sub-command is checked"
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(root, [*path, "--help"], prog_name="xraygate")
        text = result.output
        where = " ".join(path) or "(root)"
        assert result.exit_code == 0, f"{where}: {text}"
        assert not PLACEHOLDER.search(text), f"{where}: type placeholder\n{text}"
        assert not re.search(r"\w \.(\s|$)", text), f"{where}: stray space\n{text}"
        assert "{" not in text.splitlines()[0], f"{where}: braces in usage\n{text}"


def test_send_help_names_values_and_defaults() -> None:
    result = CliRunner().invoke(command(), ["send", "--help"], prog_name="xraygate")
    text = " ".join(result.output.split())
    assert "Usage: xraygate send [OPTIONS] PATHS..." in text
    assert "--port PORT SCP port. [default: XRAYGATE_DICOM_PORT, 11112]" in text
    assert "--host HOST SCP host. [default: 127.0.0.1]" in text
    assert "Exit code 0 when every file was stored" in text
