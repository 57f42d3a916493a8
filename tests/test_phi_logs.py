"""Issue 11, PHI: a full run of ``xraygate serve`` (DEBUG logging, plain and JSON) over a corpus
with planted identifying values, through the error paths too: a DICOM object whose pixel data
cannot be decoded, one that makes the database fail (PostgreSQL refuses NUL in text), an HL7
peer that rejects (AR), a FHIR push target that answers 400 quoting the patient, and Python
warnings that quote values. Then the captured logs, the dead-letter reasons on the admin API and
the escalation webhook are searched for every planted value: none may appear."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from io import StringIO
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.dicom_scp.conftest import dcmtk, sample
from tests.http_target import HttpTarget
from tests.mllp_listener import MllpListener
from tests.test_serve import _free_port, _wait_http
from xraygate.core.config import Settings
from xraygate.core.logging import configure_logging, scrub

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_KEY = "phi-admin-key-0123456789"
PLANTED = {
    "name": "ZEBEDEE^QUIMBY",
    "patient_id": "MRN7734119",
    "issuer": "ELSEWHERE-MRN-AUTH",
    "accession": "ACC99182",
    "birth_date": "19620415",
    "physician": "HOUSE^GREGORY",
    "institution": "St Elsewhere Hospital",
    "broken_name": "BROKEN^BARTHOLOMEW",
    "broken_id": "MRN5550001",
    "db_name": "NULLIFY^NORBERT",
    "db_id": "MRN8880002",
}


def _planted(path: Path, out: Path, who: str, **extra: object) -> dict[str, str]:
    """A copy of ``path`` carrying planted identifiers; returns its UIDs (planted too)."""
    ds = dcmread(path)
    ds.PatientName = PLANTED[f"{who}name"] if who else PLANTED["name"]
    ds.PatientID = PLANTED[f"{who}id"] if who else PLANTED["patient_id"]
    ds.IssuerOfPatientID = PLANTED["issuer"]
    ds.AccessionNumber = PLANTED["accession"]
    ds.PatientBirthDate = PLANTED["birth_date"]
    ds.ReferringPhysicianName = PLANTED["physician"]
    ds.InstitutionName = PLANTED["institution"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.save_as(out, enforce_file_format=True)
    return {
        "study_uid": str(ds.StudyInstanceUID),
        "series_uid": str(ds.SeriesInstanceUID),
        "sop_uid": str(ds.SOPInstanceUID),
    }


def _corpus(tmp: Path) -> tuple[list[Path], dict[str, str]]:
    rg1 = sample("RG1_UNCR.dcm")
    values = dict(PLANTED)
    good, broken, dberror = tmp / "good.dcm", tmp / "broken.dcm", tmp / "dberror.dcm"
    values |= {f"good_{k}": v for k, v in _planted(rg1, good, "").items()}
    ds = dcmread(rg1)
    half = ds.PixelData[: len(ds.PixelData) // 3]  # cannot be decoded as Rows x Columns
    values |= {
        f"broken_{k}": v for k, v in _planted(rg1, broken, "broken_", PixelData=half).items()
    }
    values |= {f"db_{k}": v for k, v in _planted(rg1, dberror, "db_").items()}
    ds = dcmread(dberror)
    ds.StudyDescription = "CHEST\x00" + PLANTED["db_name"]  # NUL: PostgreSQL refuses the row
    ds.save_as(dberror, enforce_file_format=True)
    return [good, broken, dberror], values


def _hits(text: str, values: dict[str, str]) -> dict[str, int]:
    return {k: text.count(v) for k, v in values.items() if v and v in text}


@pytest.mark.parametrize("log_json", [False, True], ids=["plain", "json"])
def test_full_run_logs_carry_no_planted_value(log_json: bool, tmp_path: Path, pg_url: str) -> None:
    files, values = _corpus(tmp_path)
    echo = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "processing",
                "diagnostics": f"Unknown patient {PLANTED['name']} id {PLANTED['patient_id']}",
            }
        ],
    }
    with (
        MllpListener(script=lambda n, cid: "AR") as hl7,
        HttpTarget(script=lambda n: (400, echo)) as push,
        HttpTarget() as hook,
    ):
        dicom_port, http_port = _free_port(), _free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("XRAYGATE_")},
            "XRAYGATE_DATABASE_URL": pg_url,
            "XRAYGATE_DATA_DIR": str(tmp_path / "var"),
            "XRAYGATE_DICOM_PORT": str(dicom_port),
            "XRAYGATE_DICOM_HOST": "127.0.0.1",
            "XRAYGATE_HTTP_PORT": str(http_port),
            "XRAYGATE_HTTP_HOST": "127.0.0.1",
            "XRAYGATE_HL7_HOST": "127.0.0.1",
            "XRAYGATE_HL7_PORT": str(hl7.port),
            "XRAYGATE_FHIR_PUSH_URL": push.url,
            "XRAYGATE_ESCALATION_WEBHOOK_URL": hook.url,
            "XRAYGATE_WORKERS": "2",
            "XRAYGATE_QUEUE_POLL_SECONDS": "0.05",
            "XRAYGATE_QUEUE_MAX_ATTEMPTS": "2",
            "XRAYGATE_QUEUE_BACKOFF_SECONDS": "0.1",
            "XRAYGATE_DELIVERY_MAX_ATTEMPTS": "2",
            "XRAYGATE_MIN_FREE_BYTES": "0",
            "XRAYGATE_LOG_LEVEL": "DEBUG",
            "XRAYGATE_LOG_JSON": "true" if log_json else "false",
            "XRAYGATE_AUTH_API_KEYS": f"ops:admin:{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}",
            "PYTHONWARNINGS": "always",
        }
        log_file = tmp_path / "serve.log"
        with log_file.open("wb") as log_out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "xraygate", "serve"],
                cwd=tmp_path,
                env=env,
                stdout=log_out,
                stderr=subprocess.STDOUT,
            )
            base = f"http://127.0.0.1:{http_port}"
            try:
                _wait_http(f"{base}/healthz", proc, seconds=180)
                for path in files:
                    storescu = [dcmtk("storescu"), "-aec", "XRAYGATE", "127.0.0.1"]
                    subprocess.run(
                        [*storescu, str(dicom_port), str(path)],
                        capture_output=True,
                        timeout=60,
                    )
                dead = _wait_for_error_paths(base, hl7, push, proc)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    logs = log_file.read_text(errors="replace")
    assert logs.strip(), "the run logged nothing"
    if log_json:
        records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        assert len(records) > 10
    lines = len(logs.splitlines())
    print(f"{'json' if log_json else 'plain'}: {lines} log lines, {len(dead)} dead letters")
    assert _hits(logs, values) == {}, "planted values in the logs"
    reasons = json.dumps(dead)
    assert "correlation" in reasons
    assert _hits(reasons, values) == {}, "planted values in dead-letter reasons"
    for request in hook.requests:
        assert _hits(request.body.decode(), values) == {}, "values in the webhook"


def _wait_for_error_paths(
    base: str,
    hl7: MllpListener,
    push: HttpTarget,
    proc: subprocess.Popen[bytes],
) -> list[dict[str, object]]:
    """Until the HL7 AR and the FHIR 400 happened and they and the undecodable image are dead
    letters; the dead letters (admin API) then. (The webhook fires only for a high-risk score,
    which the demo model may not give this image: tests/hl7/test_delivery_faults.py covers its
    body.)"""
    headers = {"X-API-Key": ADMIN_KEY}
    deadline = time.monotonic() + 240
    while True:
        assert proc.poll() is None, "xraygate serve exited"
        dead: list[dict[str, object]] = httpx.get(
            f"{base}/api/admin/dead-letters", headers=headers, timeout=10
        ).json()
        kinds = {str(d.get("kind")) for d in dead}
        if hl7.received and push.requests and {"infer", "send-hl7", "push-fhir"} <= kinds:
            return dead
        assert time.monotonic() < deadline, (kinds, len(hl7.received), len(push.requests))
        time.sleep(0.5)


# --- the filter itself, on what libraries really raise and warn -------------------------------


def test_filter_scrubs_real_library_errors_and_warnings(pg_url: str, tmp_path: Path) -> None:
    """A real PostgreSQL error with planted parameters logged with its traceback, and a pydicom
    warning quoting a planted value, come out scrubbed in both formats."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    for log_json in (False, True):
        stream = StringIO()
        real_stderr, sys.stderr = sys.stderr, stream
        try:
            configure_logging(Settings(data_dir=tmp_path, log_json=log_json, log_level="DEBUG"))
        finally:
            sys.stderr = real_stderr
        log = logging.getLogger("xraygate.test")
        engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE TEMP TABLE t (k varchar(8) UNIQUE)"))
                conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": "MRN7734"})
                conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": "MRN7734"})
        except SQLAlchemyError:
            log.exception("indexing failed for %s", PLANTED["name"])
        finally:
            engine.dispose()
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            from pydicom import Dataset, config

            config.settings.writing_validation_mode = config.WARN
            ds = Dataset()
            ds.PatientBirthDate = "1962-04-15 " + PLANTED["birth_date"]  # invalid DA: warns
            config.settings.writing_validation_mode = None
        logging.shutdown()
        out = stream.getvalue()
        assert "UniqueViolation" in out or "IntegrityError" in out, out
        assert "<redacted>" in out
        assert "Invalid value for VR DA" in out, out  # the pydicom warning was logged
        for value in ("MRN7734", PLANTED["name"], PLANTED["birth_date"]):
            assert value not in out, (log_json, value, out)
    logging.captureWarnings(False)
    logging.getLogger().handlers.clear()


@pytest.mark.parametrize(
    ("raw", "gone"),
    [
        ("Key (patient_key)=(HOSP|MRN123) already exists.", "MRN123"),
        ("[parameters: {'a': 'DOE^JANE', 'b': 'X'}]", "DOE^JANE"),
        ("(0010,0010) Patient's Name PN: 'DOE^JANE'", "DOE^JANE"),
        ("Invalid value for VR PN: DOE^JANE", "DOE^JANE"),
        ("PID|1||MRN123^^^HOSP||DOE^JANE", "MRN123"),
        ("study 1.2.840.113619.2.55.3.604688119 failed", "1.2.840.113619"),
        ("no patient id MRN123; Accession Number: A-77", "A-77"),
        ("instance 2.25.329800735698586629295641978511506172918 stored", "2.25.3298007"),
    ],
)
def test_scrub(raw: str, gone: str) -> None:
    assert gone not in scrub(raw)
    assert "failed" in scrub("study 1.2.3.4.5 failed")  # the words around stay


@pytest.mark.parametrize(
    "kept",
    [
        "DICOM SCP XRAYGATE listening on 0.0.0.0:11112",
        "Uvicorn running on http://127.0.0.1:8080",
        "worker vm:1:ab started for deidentify, emit-fhir, infer",
        "pynetdicom 3.0.4, fhirVersion 4.0.1",
    ],
)
def test_scrub_keeps_addresses_versions_and_job_kinds(kept: str) -> None:
    """Operational lines a newcomer reads at start-up stay readable."""
    assert scrub(kept) == kept
