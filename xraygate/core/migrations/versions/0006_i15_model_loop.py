"""model loop: out-of-distribution distances on results, where a model version came from

Revision ID: 0006_i15_model_loop
Revises: 0005_gateway
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006_i15_model_loop"
down_revision = "0005_gateway"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("instance_results") as batch:
        batch.add_column(sa.Column("ood_distance", sa.Float(), nullable=True))
    with op.batch_alter_table("study_results") as batch:
        batch.add_column(sa.Column("ood_distance", sa.Float(), nullable=True))
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(
            sa.Column("origin", _str(length=500), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("origin")
    with op.batch_alter_table("study_results") as batch:
        batch.drop_column("ood_distance")
    with op.batch_alter_table("instance_results") as batch:
        batch.drop_column("ood_distance")
