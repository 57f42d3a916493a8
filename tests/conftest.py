"""Shared fixtures: database URLs (SQLite and the local PostgreSQL), settings with a temp data dir.

PostgreSQL tests use the server at ``XRAYGATE_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets its own schema-free database by
creating a fresh database per test module. Where no server answers, those tests skip with a
reason, unless ``CI`` is set: CI must run them, so there they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from xraygate.core import db
from xraygate.core.config import Settings, get_settings

# Tests report a study at once (today's behaviour) unless they test the wait for a complete
# study themselves (tests/core/test_study_stability.py): subprocesses inherit this too.
os.environ.setdefault("XRAYGATE_STUDY_STABLE_SECONDS", "0")

PG_ADMIN_URL = os.environ.get(
    "XRAYGATE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}"
    return None


_PG_PROBLEM = _pg_available()


def _pg_or_skip() -> None:
    if _PG_PROBLEM:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {_PG_PROBLEM}")
        pytest.skip(_PG_PROBLEM)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    _pg_or_skip()
    name = f"xg_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    yield url
    db.get_engine.cache_clear()
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'xraygate.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once on SQLite and once on the local PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'xraygate.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings on a temp data dir and the parametrized database, migrated to head."""
    data = tmp_path / "var"
    monkeypatch.setenv("XRAYGATE_DATA_DIR", str(data))
    monkeypatch.setenv("XRAYGATE_DATABASE_URL", database_url)
    monkeypatch.setenv("XRAYGATE_MIN_FREE_BYTES", "0")
    get_settings.cache_clear()
    s = get_settings()
    db.upgrade(s.resolved_database_url)
    yield s
    get_settings.cache_clear()


@pytest.fixture
def sqlite_settings(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Like ``settings`` but SQLite only (for tests whose subject is not the database)."""
    monkeypatch.setenv("XRAYGATE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("XRAYGATE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("XRAYGATE_MIN_FREE_BYTES", "0")
    get_settings.cache_clear()
    s = get_settings()
    db.upgrade(s.resolved_database_url)
    yield s
    get_settings.cache_clear()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 endpoint over HTTP on loopback: moto's server in a subprocess."""
    import subprocess
    import sys
    import time

    import httpx

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_settings(
    tmp_path: Path, sqlite_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """SQLite index + an S3 object store (fresh bucket) on the loopback moto endpoint."""
    monkeypatch.setenv("XRAYGATE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("XRAYGATE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("XRAYGATE_STORAGE_URL", f"s3://xg-{uuid.uuid4().hex[:10]}/objects")
    monkeypatch.setenv("XRAYGATE_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("XRAYGATE_S3_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("XRAYGATE_S3_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("XRAYGATE_MIN_FREE_BYTES", "0")
    get_settings.cache_clear()
    s = get_settings()
    db.upgrade(s.resolved_database_url)
    yield s
    get_settings.cache_clear()
