"""The database for a CLI command, opened without loading Alembic when the schema is current.

Every command may be the first to touch a fresh install, so each asks for a migrated database;
running Alembic's upgrade to learn that nothing needs doing costs most of a short command's
start-up. :func:`engine` reads the stored revision with one query and compares it with the head
of the migration scripts (found by reading their ``revision``/``down_revision`` lines); only when
they differ (or the database is new) does it run the real upgrade.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from xraygate.core.config import Settings

MIGRATIONS_VERSIONS = Path(__file__).resolve().parents[1] / "core" / "migrations" / "versions"
_REV = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def script_heads(versions: Path) -> set[str]:
    """Revisions no other script names as its down_revision (the heads)."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in versions.glob("*.py"):
        for key, value in _REV.findall(path.read_text(encoding="utf-8")):
            found = set(re.findall(r"""["']([^"']+)["']""", value))
            (revisions if key == "revision" else downs).update(found)
    return revisions - downs


def engine(settings: Settings) -> Engine:
    """The engine of the configured database, migrated to head if it is not there yet."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from xraygate.core import db

    url = settings.resolved_database_url
    eng = db.get_engine(url)
    try:
        with eng.connect() as conn:
            stored = {
                str(r[0]) for r in conn.execute(text("SELECT version_num FROM alembic_version"))
            }
    except SQLAlchemyError:
        stored = set()
    if not stored or stored != script_heads(MIGRATIONS_VERSIONS):
        db.upgrade(url)
    return eng
