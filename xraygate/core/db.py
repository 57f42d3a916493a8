"""Database engine, sessions and schema migrations.

SQLite (the embedded default) runs in WAL mode with a busy timeout, and every writing transaction
goes through one process-wide lock (:func:`write_lock`) so that concurrent SCP and worker threads
queue up instead of failing with "database is locked". PostgreSQL needs no such lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine

from xraygate.core import models  # noqa: F401  (registers every table)
from xraygate.core.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_SQLITE_WRITE_LOCK = threading.RLock()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One engine per database URL per process."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            _private_file(Path(path))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=20)


def _private_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (0600) before SQLite does (it would use
    the umask, typically world-readable); SQLite gives its -wal and -shm files the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def write_lock(engine: Engine) -> threading.RLock | nullcontext[None]:
    """The single-writer lock on SQLite; a no-op on PostgreSQL."""
    return _SQLITE_WRITE_LOCK if is_sqlite(engine) else nullcontext()


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose work commits as one transaction, or rolls back entirely on error."""
    with write_lock(engine), Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise DatabaseError(f"database write failed: {type(exc).__name__}") from exc
        except BaseException:
            session.rollback()
            raise


def read_session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest), keeping existing data."""
    try:
        command.upgrade(alembic_config(url), revision)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"migration failed: {exc}") from exc


def open_database(url: str, *, migrate: bool = False) -> Engine:
    """The engine for ``url``; with ``migrate``, the schema is brought to the newest revision
    first (what every command and process that may be the first to touch the database asks)."""
    if migrate:
        upgrade(url)
    return get_engine(url)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev
