"""`xraygate send` against a running SCP, as a newcomer runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dicom_scp.conftest import RunningScp, sample, start
from xraygate.core.config import Settings

pytestmark = pytest.mark.integration


def test_send_files_and_directories(scp: RunningScp, tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "ct.dcm").write_bytes(sample("CT_small.dcm").read_bytes())
    (folder / "notes.txt").write_text("not dicom")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "xraygate",
            "send",
            str(sample("RG1_UNCR.dcm")),
            str(folder),
            "--port",
            str(scp.port),
            "--aet",
            "XRAYGATE",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert out.returncode == 1, "one file was not DICOM"
    assert "sent: 2  failed: 1" in out.stdout
    assert "notes.txt: status 0xC000 not a DICOM file" in out.stderr
    scp.assert_stored(sample("RG1_UNCR.dcm"))
    scp.assert_stored(sample("CT_small.dcm"))


def test_send_to_nobody_is_a_clear_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "xraygate", "send", str(sample("CT_small.dcm")), "--port", "9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: association with XRAYGATE@127.0.0.1:9")
    assert "Traceback" not in out.stderr


def test_send_rejected_by_allowlist_is_a_clear_error(settings: Settings) -> None:
    from typer.testing import CliRunner

    from xraygate.cli import app

    settings.allowed_calling_aets = ["MODALITY1"]
    running = start(settings)
    try:
        result = CliRunner().invoke(
            app,
            ["send", str(sample("CT_small.dcm")), "--port", str(running.port)],
        )
        assert result.exit_code == 2
        assert "rejected (check AE titles)" in result.output
        ok = CliRunner().invoke(
            app,
            [
                "send",
                str(sample("CT_small.dcm")),
                "--port",
                str(running.port),
                "--calling-aet",
                "MODALITY1",
            ],
        )
        assert ok.exit_code == 0, ok.output
        assert "sent: 1  failed: 0" in ok.output
        running.assert_stored(sample("CT_small.dcm"))
    finally:
        running.server.shutdown()
