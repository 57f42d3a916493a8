"""`xraygate send` against a running SCP, as a newcomer runs it."""

from __future__ import annotations

import os
import re
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
    assert re.search(r"^FAILED 0xC000  .*notes\.txt: not a DICOM file", out.stdout, re.M)
    assert re.search(r"^stored +.*ct\.dcm$", out.stdout, re.M)
    assert "1 of 3 files were not stored" in out.stderr
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


def test_send_the_whole_pydicom_data_directory(sqlite_settings: Settings) -> None:
    """Issue 12: a line per file, a summary, no traceback; every sendable file stored. The
    truncated JPEG 2000 file makes pynetdicom fail inside send_c_store (UnboundLocalError):
    that file fails and the files after it still go."""
    from pydicom import dcmread

    folder = sample("RG1_UNCR.dcm").parent
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    running = start(sqlite_settings)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "xraygate", "send", str(folder), "--port", str(running.port)],
            capture_output=True,
            text=True,
            timeout=280,
            env={k: v for k, v in os.environ.items() if not k.startswith("XRAYGATE_")},
        )
        indexed = {i.sop_instance_uid for i in running.instances()}
    finally:
        running.server.shutdown()
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    lines = re.findall(r"^(stored|FAILED)( 0x[0-9A-F]{4})? +(\S+?)(:.*|  \(.*)?$", out.stdout, re.M)
    assert sorted(Path(p) for _, _, p, _ in lines) == files, "one line per file"
    failed = {Path(p).name: why for kind, _, p, why in lines if kind == "FAILED"}
    assert set(failed) == {
        "OT-PAL-8-face.dcm",  # not a DICOM file (no preamble/meta): never sent
        "bad_sequence.dcm",  # 0xA900: a malformed StudyInstanceUID (refused before it is a key)
        "color3d_jpeg_baseline.dcm",  # 0xA900: 120-frame colour cine over XRAYGATE_MAX_IMAGE_PIXELS
        "emri_small_jpeg_2k_lossless_too_short.dcm",  # truncated: pynetdicom fails on it
    }, failed
    assert "StudyInstanceUID" in failed["bad_sequence.dcm"]
    assert "image too large" in failed["color3d_jpeg_baseline.dcm"]
    assert "UnboundLocalError" in failed["emri_small_jpeg_2k_lossless_too_short.dcm"]
    for _, _, p, _ in lines:
        if Path(p).name not in failed:
            uid = dcmread(p, stop_before_pixels=True).SOPInstanceUID
            assert uid in indexed, f"{p} reported stored but not in the index"
    n_ok = len(files) - len(failed)
    assert f"sent: {n_ok}  failed: {len(failed)}" in out.stdout
    assert (
        out.returncode == 1 and f"{len(failed)} of {len(files)} files were not stored" in out.stderr
    )
