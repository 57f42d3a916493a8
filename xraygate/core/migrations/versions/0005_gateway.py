"""gateway tables (placeholder until the gateway area adds its tables).

Revision ID: 0005_gateway
Revises: 0004_deid
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401

revision = "0005_gateway"
down_revision = "0004_deid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
