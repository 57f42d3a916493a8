"""delivery tables (placeholder until the delivery area adds its tables).

Revision ID: 0003_delivery
Revises: 0002_inference
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401

revision = "0003_delivery"
down_revision = "0002_inference"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
