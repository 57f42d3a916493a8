"""viewer: the saliency map stored with an instance result

Revision ID: 0009_hview_saliency
Revises: 0008_h11_security
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009_hview_saliency"
down_revision = "0008_h11_security"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("instance_results") as batch:
        batch.add_column(sa.Column("saliency_key", _str(length=400), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance_results") as batch:
        batch.drop_column("saliency_key")
