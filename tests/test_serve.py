"""`xraygate serve` on embedded defaults, as the README's quick start runs it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.dicom_scp.conftest import dcmtk, sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "xraygate serve exited"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def test_serve_receives_with_storescu_and_reports(tmp_path: Path) -> None:
    dicom_port, http_port = _free_port(), _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("XRAYGATE_")},
        "XRAYGATE_DICOM_PORT": str(dicom_port),
        "XRAYGATE_HTTP_PORT": str(http_port),
        "XRAYGATE_HTTP_HOST": "127.0.0.1",
        "XRAYGATE_DICOM_HOST": "127.0.0.1",
    }
    console = (tmp_path / "serve.log").open("w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "xraygate", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=console,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{http_port}"
    try:
        _wait_http(f"{base}/healthz", proc)
        ready = httpx.get(f"{base}/readyz", timeout=5).json()
        assert ready["checks"]["database"] == "ok" and ready["checks"]["object_store"] == "ok"
        sent = subprocess.run(
            [
                dcmtk("storescu"),
                "-aec",
                "XRAYGATE",
                "127.0.0.1",
                str(dicom_port),
                str(sample("RG1_UNCR.dcm")),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'xraygate_instances_received_total{sop_class="1.2.840.10008.5.1.4.1.1.1"} 1.0' in (
            metrics
        )
        status = subprocess.run(
            [sys.executable, "-m", "xraygate", "status"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert re.search(r"^instances: +1$", status.stdout, re.M), status.stdout
        assert re.search(r"^studies: +1$", status.stdout, re.M), status.stdout
        deadline = time.monotonic() + 60
        while True:
            results = subprocess.run(
                [sys.executable, "-m", "xraygate", "results", "--json"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            scored = json.loads(results.stdout or "[]")
            if scored or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [r["category"] in ("high", "indeterminate", "low") for r in scored] == [True]
        assert scored[0]["model_version"] == "xraygate-demo-cxr:1.0.0"
        assert (tmp_path / "var" / "xraygate.db").is_file(), "embedded default data dir ./var"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        console.close()
    _assert_one_startup_block((tmp_path / "serve.log").read_text(), dicom_port, http_port)


def _assert_one_startup_block(out: str, dicom_port: int, http_port: int) -> None:
    """Issue 12: one block says what runs where; no third-party start-up noise."""
    assert out.count(" is up\n") == 1, out
    for expected in (
        f"AE XRAYGATE on 127.0.0.1:{dicom_port}",
        f"http://127.0.0.1:{http_port}/worklist",
        "xraygate-demo-cxr:1.0.0 (active) - DEMONSTRATION model",
        f'next: xraygate send --port {dicom_port} "$(xraygate sample)"',
    ):
        assert expected in out, f"{expected!r} not in the start-up output:\n{out}"
    for label, value in (  # the labels are padded to the longest one
        ("database", "sqlite "),
        ("object store", "local directory "),
        ("HL7 ORU^R01", "off (set XRAYGATE_HL7_HOST + XRAYGATE_HL7_PORT)"),
        ("FHIR push", "off (set XRAYGATE_FHIR_PUSH_URL)"),
        ("PACS (DICOM SR)", "off (set XRAYGATE_PACS_HOST"),
    ):
        line = rf"^ +{re.escape(label)} +{re.escape(value)}"
        assert re.search(line, out, re.M), f"{label} {value!r} not in the start-up output:\n{out}"
    for noise in ("oneDNN", "absl::InitializeLog", "cpu_feature_guard", "font cache", "Traceback"):
        assert noise not in out, f"{noise!r} printed at start-up:\n{out}"
    assert "Running upgrade" not in out, "one line per migration is noise"
