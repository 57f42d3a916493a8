"""Start-up with the database unreachable: a process waits for it (a pod started before
PostgreSQL, or during an outage: the cluster harness saw pods crash-loop on it), and one that
waits in vain exits with one line naming the settings, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import text

from tests.cluster.faultproxy import FaultProxy
from xraygate.core import db
from xraygate.core.config import Settings
from xraygate.service import open_object_store, open_queue

pytestmark = pytest.mark.integration


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def test_a_process_waits_for_a_database_that_comes_up(pg_url: str, tmp_path: Path) -> None:
    upstream = urlsplit(pg_url)
    proxy = FaultProxy((upstream.hostname or "127.0.0.1", upstream.port or 5432), "pg").start()
    try:
        proxy.outage("reset")  # every connection is reset: psycopg's OperationalError
        settings = Settings(  # type: ignore[call-arg]
            data_dir=tmp_path,
            database_url=_through(pg_url, proxy.port),
            startup_wait_seconds=600,
        )
        pauses: list[float] = []

        def sleep(seconds: float) -> None:  # no waiting: the database comes back on the 3rd
            pauses.append(seconds)
            if len(pauses) == 3:
                proxy.heal()

        queue = open_queue(settings, sleep=sleep)
        assert pauses == [1.0, 2.0, 4.0], "a growing pause between attempts"
        with queue.engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert revision == db.current_revision(pg_url) is not None, "migrated once reachable"
        queue.engine.dispose()
    finally:
        proxy.stop()
        db.get_engine.cache_clear()


def test_a_database_that_stays_away_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XRAYGATE_")}
    env |= {
        "XRAYGATE_DATA_DIR": str(tmp_path),
        "XRAYGATE_DATABASE_URL": "postgresql+psycopg://xraygate@127.0.0.1:9/none",  # discard port
        "XRAYGATE_STARTUP_WAIT_SECONDS": "2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "xraygate", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "database not reachable yet; retrying" in done.stderr
    assert "error: database unreachable for 2 s" in done.stderr
    assert "XRAYGATE_DATABASE_URL" in done.stderr


def test_a_process_waits_for_an_s3_endpoint_that_comes_up(s3_endpoint: str, tmp_path: Path) -> None:
    upstream = urlsplit(s3_endpoint)
    proxy = FaultProxy((upstream.hostname or "127.0.0.1", upstream.port or 80), "s3").start()
    try:
        proxy.outage("reset")
        settings = Settings(  # type: ignore[call-arg]
            data_dir=tmp_path,
            storage_url="s3://xg-startup-wait/objects",
            s3_endpoint_url=f"http://127.0.0.1:{proxy.port}",
            s3_access_key_id="test",
            s3_secret_access_key="test",
            startup_wait_seconds=600,
        )
        pauses: list[float] = []

        def sleep(seconds: float) -> None:
            pauses.append(seconds)
            if len(pauses) == 2:
                proxy.heal()

        store = open_object_store(settings, sleep=sleep)
        assert pauses == [1.0, 2.0]
        store.put_bytes("probe", b"up")
        assert store.get_bytes("probe") == b"up"
    finally:
        proxy.stop()


def test_the_start_up_block_survives_a_database_that_does_not_answer(tmp_path: Path) -> None:
    """The block is information: a database gone between the start and the block (the cluster
    saw an SCP die there during a PostgreSQL outage) makes its model line say so, no more."""
    from sqlalchemy import create_engine

    from xraygate.core import startup

    settings = Settings(data_dir=tmp_path)  # type: ignore[call-arg]
    gone = create_engine("postgresql+psycopg://xraygate@127.0.0.1:9/none")
    text_block = startup.block(settings, engine=gone, scp_port=11112, http=False, workers=True)
    assert "model            unknown (the database did not answer at start-up)" in text_block
