"""Strict checks of the DICOM objects we create: dciodvfy (dicom3tools) and dcmtk dsrdump."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.dicom_scp.conftest import dcmtk


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's error lines for ``path`` (warnings are not errors)."""
    proc = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    out = proc.stdout + proc.stderr
    assert "ComprehensiveSR" in out or "SC" in out or "Secondary" in out, out
    return [line for line in out.splitlines() if line.startswith("Error")]


def dsrdump(path: Path) -> str:
    proc = subprocess.run(
        [dcmtk("dsrdump"), "+Pc", "+Pl", "+Pt", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
