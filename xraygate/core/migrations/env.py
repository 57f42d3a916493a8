"""Alembic environment: runs migrations against the URL set by :func:`xraygate.core.db.upgrade`."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from xraygate.core import models  # noqa: F401  (registers every table)
from xraygate.core.db import get_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url is not None
engine = get_engine(url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=engine.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
