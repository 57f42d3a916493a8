"""deid tables (placeholder until the deid area adds its tables).

Revision ID: 0004_deid
Revises: 0003_delivery
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401

revision = "0004_deid"
down_revision = "0003_delivery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
