"""Migrations build exactly the schema the models declare, and an upgrade keeps data."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from xraygate.core import db


def test_migrations_match_models(database_url: str) -> None:
    db.upgrade(database_url)
    engine = db.get_engine(database_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_upgrade_from_first_revision_keeps_rows(database_url: str) -> None:
    db.upgrade(database_url, "0001_index_queue")
    engine = db.get_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO patients (patient_key, patient_id, issuer, name, birth_date, sex,"
                " created_at) VALUES ('|P1', 'P1', '', '', '', '', CURRENT_TIMESTAMP)"
            )
        )
    db.upgrade(database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT patient_id FROM patients")).scalar_one() == "P1"
    assert db.current_revision(database_url) == _head()


def _head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(db.alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head
