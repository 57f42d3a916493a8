"""``status`` and ``results`` on the bare driver (xraygate/cli/quick.py): the same answers as the
ORM path, the ORM path whenever the quick one does not apply, and short commands that never load
the service's heavy libraries (structural: which modules a command imports, not how long)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col

from tests.results_factory import make_result
from xraygate.cli import quick
from xraygate.cli.core import status_counts
from xraygate.cli.model import results_data
from xraygate.core import db
from xraygate.core.config import Settings, get_settings
from xraygate.core.models import (
    Channel,
    Job,
    JobState,
    OutboxMessage,
    OutboxState,
    StudyResult,
    utcnow,
)

NEVER_IMPORTED = ("tensorflow", "keras", "fastapi", "pydicom", "pynetdicom", "boto3", "botocore")
# With the schema current, the quick path reads through the bare driver (sqlite3, psycopg).
NOT_ON_THE_QUICK_PATH = ("sqlalchemy", "sqlmodel", "alembic")


def _outbox(engine: Engine, study_uid: str, channel: str, state: str, n: int) -> None:
    with db.write_session(engine) as s:
        s.add(
            OutboxMessage(
                channel=channel,
                stream_key=f"{channel}|{study_uid}",
                seq=n,
                dedupe_key=f"{study_uid}-{n}",
                control_id=f"{study_uid[-20:]}-{n}",
                study_uid=study_uid,
                content_type="text/plain",
                message="MSH|...",
                state=state,
            )
        )


def _populate(settings: Settings) -> Engine:
    """Three results (one not applicable, one shadow) with HL7 and other channel messages in
    every outbox state, and jobs in two states."""
    engine = db.get_engine(settings.resolved_database_url)
    high = make_result(engine, accession="A-1", score=0.91, category="high")
    na = make_result(engine, accession="A-2", score=None, category="not-applicable")
    shadow = make_result(engine, accession="A-3", score=0.12, category="low", shadow=True)
    _outbox(engine, high.study_uid, Channel.HL7, OutboxState.DELIVERED, 1)
    _outbox(engine, high.study_uid, Channel.WEBHOOK_ESCALATION, OutboxState.PENDING, 2)
    _outbox(engine, shadow.study_uid, Channel.FHIR_PUSH, OutboxState.DEAD, 3)
    with db.write_session(engine) as s:
        s.add(Job(kind="emit-hl7", dedupe_key="j1", state=JobState.DONE))
        s.add(Job(kind="emit-hl7", dedupe_key="j2", state=JobState.DEAD))
        s.add(Job(kind="emit-hl7", dedupe_key="j3", state=JobState.DEAD))
        # distinct, known updated_at (microseconds both zero and not) so the order is defined
        base = utcnow().replace(microsecond=0)
        for i, made in enumerate((high, na, shadow)):
            s.execute(
                update(StudyResult)
                .where(col(StudyResult.id) == made.result_id)
                .values(updated_at=base - timedelta(minutes=i, microseconds=i * 1234))
            )
    return engine


def test_quick_status_and_results_equal_the_orm_path(settings: Settings) -> None:
    _populate(settings)
    counts = quick.status_counts(settings)
    assert counts == status_counts(settings)
    assert counts is not None and counts["jobs_dead"] == 2 and counts["studies"] == 3
    for limit in (50, 2):
        fast = quick.results_data(settings, limit)
        assert fast is not None and len(fast) == min(limit, 3)
        assert json.dumps(fast) == json.dumps(results_data(settings, limit))
    fast = quick.results_data(settings, 50) or []
    assert fast[0]["delivery"]["hl7"] == "delivered"
    assert fast[0]["delivery"]["webhook-escalation"] == "pending"
    assert fast[2]["shadow"] is True and fast[2]["delivery"]["fhir-push"] == "failed"
    assert fast[1]["score"] is None and fast[0]["updated_at"].endswith("+00:00")


def test_quick_path_steps_aside_for_a_new_or_older_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_file = tmp_path / "var" / "xraygate.db"
    monkeypatch.setenv("XRAYGATE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("XRAYGATE_DATABASE_URL", f"sqlite:///{db_file}")
    get_settings.cache_clear()
    settings = get_settings()
    assert quick.status_counts(settings) is None and not db_file.exists()  # left to migrate
    db.upgrade(settings.resolved_database_url, "0007_h10_ehr")
    assert quick.results_data(settings, 5) is None  # not at head: the full path migrates
    assert status_counts(settings)["instances"] == 0
    assert quick.status_counts(settings) == status_counts(settings)
    get_settings.cache_clear()


def _imported(args: list[str], env: dict[str, str]) -> tuple[set[str], str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "xraygate", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("import time:")]
    names = {ln.rsplit("|", 1)[1].strip() for ln in lines[1:]}  # the first line is the header
    return names, done.stdout


@pytest.mark.parametrize(
    "args", [["--help"], ["status"], ["status", "--json"], ["results"], ["results", "--json"]]
)
def test_short_commands_never_load_the_service_libraries(
    args: list[str], settings: Settings
) -> None:
    _populate(settings)
    env = {
        "XRAYGATE_DATA_DIR": str(settings.data_dir),
        "XRAYGATE_DATABASE_URL": settings.resolved_database_url,
    }
    names, out = _imported(args, env)
    assert "xraygate.cli" in names  # the measure works: our own modules are listed
    roots = {name.split(".")[0] for name in names}
    assert not roots & set(NEVER_IMPORTED), sorted(roots & set(NEVER_IMPORTED))
    assert not roots & set(NOT_ON_THE_QUICK_PATH), sorted(roots & set(NOT_ON_THE_QUICK_PATH))
    if args[0] == "results":
        assert "A-1" in out and "A-3" in out  # it did read the results
