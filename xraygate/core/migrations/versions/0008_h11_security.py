"""security: browser sessions revoked at logout

Revision ID: 0008_h11_security
Revises: 0008_h10h_order
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008_h11_security"
down_revision = "0008_h10h_order"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_ts = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "revoked_sessions",
        sa.Column("sid", _str(length=64), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("revoked_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("sid"),
    )
    op.create_index(
        "ix_revoked_sessions_expires_at", "revoked_sessions", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_revoked_sessions_expires_at", table_name="revoked_sessions")
    op.drop_table("revoked_sessions")
