"""order context of a study: placer order number and requested procedure code (HL7 ORC/OBR)

Revision ID: 0008_h10h_order
Revises: 0007_h10_ehr
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008_h10h_order"
down_revision = "0007_h10_ehr"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
COLUMNS = (
    "placer_order_number",
    "requested_procedure_code",
    "requested_procedure_scheme",
    "requested_procedure_meaning",
)


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, _str(length=64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
