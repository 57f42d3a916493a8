"""EHR identity: the patient's assigning authority as a universal entity id (OID, ...)

Revision ID: 0007_h10_ehr
Revises: 0006_i15_model_loop
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007_h10_ehr"
down_revision = "0006_i15_model_loop"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.add_column(
            sa.Column("issuer_universal_id", _str(length=64), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column(
                "issuer_universal_id_type", _str(length=16), nullable=False, server_default=""
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("issuer_universal_id_type")
        batch.drop_column("issuer_universal_id")
