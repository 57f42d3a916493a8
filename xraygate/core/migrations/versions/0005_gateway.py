"""gateway: the audit trail of patient-data access

Revision ID: 0005_gateway
Revises: 0004_deid
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005_gateway"
down_revision = "0004_deid"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_ts = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", _ts(), nullable=False),
        sa.Column("actor", _str(length=200), nullable=False),
        sa.Column("auth_method", _str(length=16), nullable=False),
        sa.Column("roles", _str(length=100), nullable=False),
        sa.Column("action", _str(length=1), nullable=False),
        sa.Column("method", _str(length=8), nullable=False),
        sa.Column("route", _str(length=200), nullable=False),
        sa.Column("path", _str(length=500), nullable=False),
        sa.Column("query", _str(length=2000), nullable=False),
        sa.Column("study_uid", _str(length=64), nullable=True),
        sa.Column("source", _str(length=64), nullable=False),
        sa.Column("user_agent", _str(length=200), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_events_recorded_at", "audit_events", ["recorded_at"], unique=False)
    op.create_index("ix_audit_events_study_uid", "audit_events", ["study_uid"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_events_study_uid", table_name="audit_events")
    op.drop_index("ix_audit_events_recorded_at", table_name="audit_events")
    op.drop_table("audit_events")
