"""The service CLI as an operator runs it: a real subprocess reading XRAYGATE_* settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xraygate", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {"XRAYGATE_DATA_DIR": str(tmp_path / "var"), "XRAYGATE_DATABASE_URL": database_url}


def test_db_upgrade_then_status(env: dict[str, str]) -> None:
    up = run_cli("db", "upgrade", env=env)
    assert up.returncode == 0, up.stderr
    assert "database at revision" in up.stdout
    plain = run_cli("status", env=env)
    assert plain.returncode == 0, plain.stderr
    pairs = (line.split(":") for line in plain.stdout.strip().splitlines())
    lines = {name: value.strip() for name, value in pairs}
    assert lines["instances"] == "0" and lines["studies"] == "0" and lines["jobs_pending"] == "0"
    as_json = json.loads(run_cli("status", "--json", env=env).stdout)
    assert as_json["instances"] == 0 and "jobs_dead" in as_json


def test_status_reports_a_bad_database_url_clearly(tmp_path: Path) -> None:
    out = run_cli(
        "status",
        env={"XRAYGATE_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"},
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error:")
    assert "Traceback" not in out.stderr


def test_sample_prints_the_bundled_chest_cr() -> None:
    out = run_cli("sample", env={})
    assert out.returncode == 0
    path = Path(out.stdout.strip())
    assert path.name == "RG1_UNCR.dcm" and path.is_file()
    missing = run_cli("sample", "NO_SUCH_FILE.dcm", env={})
    assert missing.returncode == 2 and "no sample named" in missing.stderr
