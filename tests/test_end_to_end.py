"""End to end: `xraygate serve`, RG1 sent with dcmtk storescu, then the DiagnosticReport is
retrievable by patient over the FHIR API and the ORU^R01 has arrived at a real MLLP listener.

No wall-clock budget is asserted (tests never depend on timing; a loaded CI machine is not a
benchmark): the time from the C-STORE acknowledgement to both deliveries is printed; on a quiet
machine it is well under 2 s."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread

from tests.dicom_scp.conftest import dcmtk, sample
from tests.mllp_listener import MllpListener
from tests.test_serve import _free_port, _wait_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]
API_KEY = "e2e-ehr-key-0123456789"
AUTH = {"X-API-Key": API_KEY}


def _report_for(base: str, patient_id: str) -> dict[str, object] | None:
    patients = httpx.get(
        f"{base}/fhir/Patient", params={"identifier": patient_id}, headers=AUTH, timeout=5
    )
    if patients.status_code != 200 or not patients.json().get("entry"):
        return None
    pid = patients.json()["entry"][0]["resource"]["id"]
    reports = httpx.get(
        f"{base}/fhir/DiagnosticReport", params={"patient": pid}, headers=AUTH, timeout=5
    )
    entries = reports.json().get("entry", []) if reports.status_code == 200 else []
    return entries[0]["resource"] if entries else None


DEADLINE = 180.0  # a stall, not a speed target


def test_storescu_to_fhir_and_hl7(tmp_path: Path) -> None:
    path = sample("RG1_UNCR.dcm")
    patient_id = str(dcmread(path, stop_before_pixels=True).PatientID)
    with MllpListener(strict_parse=True) as listener:
        dicom_port, http_port = _free_port(), _free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("XRAYGATE_")},
            "XRAYGATE_DICOM_PORT": str(dicom_port),
            "XRAYGATE_HTTP_PORT": str(http_port),
            "XRAYGATE_HTTP_HOST": "127.0.0.1",
            "XRAYGATE_DICOM_HOST": "127.0.0.1",
            "XRAYGATE_HL7_HOST": "127.0.0.1",
            "XRAYGATE_HL7_PORT": str(listener.port),
            "XRAYGATE_WORKERS": "2",
            "XRAYGATE_QUEUE_POLL_SECONDS": "0.05",
            # the 2 s target is for a single-image study reported at once (the wait for more
            # images of a study is covered by tests/core/test_study_stability.py)
            "XRAYGATE_STUDY_STABLE_SECONDS": "0",
            "XRAYGATE_AUTH_API_KEYS": f"e2e:ehr:{hashlib.sha256(API_KEY.encode()).hexdigest()}",
        }
        proc = subprocess.Popen([sys.executable, "-m", "xraygate", "serve"], cwd=tmp_path, env=env)
        base = f"http://127.0.0.1:{http_port}"
        try:
            _wait_http(f"{base}/healthz", proc)
            unauthenticated = httpx.get(f"{base}/fhir/DiagnosticReport", timeout=5)
            assert unauthenticated.status_code == 401
            sent = subprocess.run(
                [dcmtk("storescu"), "-aec", "XRAYGATE", "127.0.0.1", str(dicom_port), str(path)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            acked = time.monotonic()
            assert sent.returncode == 0, sent.stderr
            report = None
            while time.monotonic() - acked < DEADLINE and (report is None or not listener.received):
                report = report or _report_for(base, patient_id)
                time.sleep(0.02)
            elapsed = time.monotonic() - acked
            print(f"\nC-STORE acknowledgement -> FHIR report and ORU^R01: {elapsed:.2f} s")
            assert report is not None, f"no DiagnosticReport for the patient in {DEADLINE} s"
            assert listener.received, f"no ORU^R01 at the listener in {DEADLINE} s"
            assert report["status"] == "preliminary"
            assert "AI-generated" in str(report["conclusion"])
            assert not listener.errors, listener.errors
            oru = listener.received[0].raw
            assert f"PID|1||{patient_id}" in oru and "OBR|" in oru and "|P" in oru
        finally:
            proc.terminate()
            proc.wait(timeout=30)
